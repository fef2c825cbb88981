"""Running images as jobs on the local engine and reading their run history:
`launch` (the pure description of a job: containers, environment, mounts, the
equivalent docker commands), `local` (starting, streaming, stopping and cleaning
up those containers), `destinations` (where outputs go on the host) and `history`
(the runs in a store: list, show, download, tail)."""
