"""Starting and supervising the training processes: command (argv of the script),
supervisor (children, signals, job semantics) with reaper (the one waitpid loop), output
(log pumps), gpus, netif; mpi/ runs the mpi backend."""
