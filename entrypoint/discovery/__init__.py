"""Discovery sources, tried in order by chain.discover(); each returns a Membership
(membership.py) or None. docs/discovery.md ("Adding a source") says how to add one."""
