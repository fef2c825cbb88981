"""The Docker engine, seen from the host: a client for it (`setup.engine_client`, and
`setup.ensure_engine` that installs and starts dockerd as root), building and pushing
images with progress and failure tails (`build`), and making tfbuild's Debian base
image offline with debootstrap (`bootstrap`). Nothing here knows about specs."""
