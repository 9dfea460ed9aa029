"""`runway-archiver browse`: the archive as a page in a browser, served on 127.0.0.1 only.

A grid of ended tasks, newest outcome first (a Query on the table's `recent-index`: status, then
completed_at, read backwards one page at a time, so the first page costs the same in an archive
of ten or of a million), filters by status, provider and date, and a page per task that plays
its video and shows its manifest. Media are reached through presigned GET URLs that expire after
`LINK_SECONDS` (one hour unless --link-seconds says otherwise): nothing is made public, and the
bytes go from S3 to the browser, never through this server.

Everything shown comes from items, manifests and the provider's answers, which are not ours:
every value is HTML-escaped, the page carries a Content-Security-Policy that allows no inline
script, and a request naming another host than the loopback address is refused (a DNS-rebinding
page cannot read the archive through it).

The standard library's ThreadingHTTPServer serves it: one local user, a handful of routes, no
templates worth a dependency.

- `model`: what the page reads of the archive (`Browser`): the grid's filters and pages, a task's view;
- `render`: the page's HTML, every value escaped;
- `server`: the HTTP server on 127.0.0.1 (`BrowseServer`, `serve`), and `static/`, its CSS and script.

The `browse` command itself (its arguments) is the CLI's: `runway_archiver.cli.browse_command`.
"""
