"""Discovery sources, tried in order by chain.discover()."""
