"""The runtime's domain kernels by domain: what draws, averages (mean field) or sums out
(log-normaliser) a group of units given its field. The names are the same in numba's
`runtime/samplers.py` (`_k.`) and in the numpy tier's `runtime/npkernels.py` (`_nk.`)."""

DRAW = {"binary": "two_state_draw", "spin": "two_state_draw", "real": "gaussian_draw",
        "categorical": "categorical_draw", "categorical_off": "categorical_off_draw"}
MEAN = {"binary": "two_state_mean", "spin": "two_state_mean", "real": "gaussian_mean",
        "categorical": "categorical_mean", "categorical_off": "categorical_off_mean"}
LOGNORM = {"binary": "two_state_lognorm", "spin": "two_state_lognorm", "real": "gaussian_lognorm",
           "categorical": "categorical_lognorm", "categorical_off": "categorical_off_lognorm"}
LOW = {"binary": ", 0.0", "spin": ", -1.0"}  # the lower value of a two-state unit (the upper is 1)
