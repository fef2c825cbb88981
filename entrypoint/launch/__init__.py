"""Starting and supervising the training processes."""
