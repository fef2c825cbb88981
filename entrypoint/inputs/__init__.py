"""Data inputs: `plan` (pure: declarations, overrides, argv paths, cache keys) and
`fetch` (listing, the node-local cache, parallel downloads, links under inputs/)."""
