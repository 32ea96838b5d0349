"""Post-processing of fingerprints: distance matrices and clustering (`similarity`), random-forest
classification (`classify`). Imports are explicit (``from sporep_hpc.analysis import similarity``)."""
