"""``make bench``: each benchmark measures kbak beside a baseline measured in the same run."""
