"""The ground floor: what every other package uses and which uses none of them — errors a user can cause,
the named registry, typed settings blocks, file I/O, progress bars, several processes, reproducible CPU
kernels. Nothing here imports torch at module level, so the light commands (`mllmcl ls`, `--help`,
`run --dry-run`) stay light."""
