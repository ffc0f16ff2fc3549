"""pruning of keras-dynfilt."""
