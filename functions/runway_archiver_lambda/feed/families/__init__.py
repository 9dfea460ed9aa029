"""One module per model family; each defines `FAMILY` (a `feed.family.Family`). Found by discovery."""
