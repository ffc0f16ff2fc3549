"""training of keras-dynfilt."""
