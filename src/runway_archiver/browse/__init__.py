"""`runway-archiver browse`: the archive as a page in a browser, served on 127.0.0.1 only."""
