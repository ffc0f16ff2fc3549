"""callbacks of keras-dynfilt."""
