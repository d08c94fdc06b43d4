"""Kernels of a model that unfolds in time (see frontend/sequence.py for the step model).

The step model compiles like any directed model (its `joint` program, with the states'
updates among its values, and `sample_model`); this module adds the loops along time, so
that a whole batch of sequences runs inside compiled code:

- `step_backward`: reverse mode of one step, from seeds on its log p and adjoints on the
  states after it, to the parameters and to the states before it (backpropagation through
  time, one step at a time);
- `sequence_logp`, `sequence_backward`, `sequence_sample`: the loops over t. Rows are
  sequences sorted longest first (the runtime sorts them), so the sequences still running at
  step t are the first `na` rows and every step works on a prefix of contiguous rows.
"""
from __future__ import annotations

from .. import abi
from . import printer as P

FAST_JIT = '@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")'


class SequenceEmitter:
    def __init__(self, dem):
        self.dem = dem
        self.seq = dem.plan.ir.sequence
        self.prog = dem.plan.programs["joint"]
        self.states = [s.name for s in self.seq.states]
        self.start = {s.name: s.start for s in self.seq.states}
        self.steps = list(self.seq.steps)
        dem.orders["steps"] = self.steps
        dem.orders["states"] = self.states
        # a per-step energy: its groups (the step's and the states, in declaration order), and
        # the step's latent groups, summed out of free energies and set to their means for CD
        undirected = set(dem.plan.ir.undirected)
        self.energy_groups = [g for g in dem.groups if g in undirected or (undirected and g in self.states)]
        self.steps_energy = [g for g in self.steps if g in undirected]
        self.hidden = [g for g in self.steps_energy if dem.plan.ir.groups[g].role == "latent"]
        if self.energy_groups:
            dem.orders["groups"] = self.energy_groups

    def w(self, text: str = "", indent: int = 0) -> None:
        self.dem.w(text, indent)

    def shape(self, group: str) -> list[str]:
        return [self.dem.poly(p) for p in self.dem.plan.shapes[group]]

    def rows_shape(self, lead: list[str], group: str) -> str:
        dims = lead + self.shape(group)
        return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"

    def step_call(self, kernel: str, extra: list[str]) -> str:
        """A call of a step kernel on the first `na` rows, the step's frames in x_<group>."""
        names = abi.parameter_names(abi.DIRECTED_MODEL, self.dem.orders)
        return f"{kernel}(" + ", ".join(["na" if a == "n_rows" else a for a in names] + extra) + ")"

    def index(self, value: str) -> int:
        return [v.name for v in self.prog.values].index(value)

    # one step backward ------------------------------------------------------------------------
    def step_backward(self) -> None:
        dem, prog = self.dem, self.prog
        dem.kernel("step_backward", "step_backward",
                   "Reverse mode of one step: g_<param> += d/dparam and dx_<state> += d/d(the state before the "
                   "step) of sum_r (seed_p[r] log p_r + sum dn_<state>[r] * (the state after the step)_r).")
        dem.unpack(prog, 1)
        dem.reverse(prog, set(self.states), {prog.logp: "seed_p"},
                    {v: f"dn_{P.ident(g)}" for g, v in prog.states.items()})

    # the loops along time ---------------------------------------------------------------------
    def open_states(self, indent: int) -> None:
        """Every sequence's states start from their parameters (u[-1] = u0)."""
        for g in self.states:
            self.w(f"{P.group(g)} = np.empty({self.rows_shape(['n_rows'], g)})", indent)
            self.w("for r in range(n_rows):", indent)
            self.w(f"{P.group(g)}[r] = {P.param(self.start[g])}", indent + 1)

    def frames(self, t: str, indent: int, masks: bool = False) -> None:
        self.w(f"na = _k.active_rows(lengths, {t})", indent)
        for g in self.steps:
            self.w(f"{P.group(g)} = np.ascontiguousarray(xs_{P.ident(g)}[:na, {t}])", indent)
            if masks:
                self.w(f"m_{P.ident(g)} = np.ascontiguousarray(ms_{P.ident(g)}[:na, {t}])", indent)

    def advance(self, indent: int) -> None:
        """The states after the step become the states before the next one."""
        for g, v in self.prog.states.items():
            self.w(f"{P.group(g)} = values[{self.index(v)}]  # {g}[t], from its update", indent)

    def forward_loop(self, keep: str = "", masks: bool = False, allocate: bool = False) -> None:
        """Open the loop over steps at indent 1 (its body at 2): the states from their starts,
        each step's frames, the states cut to the running rows; `keep` ("kept_") stores the
        states before each step (allocated here when `allocate`, else an argument)."""
        self.w("n_steps = lengths[0] if n_rows > 0 else 0", 1)
        self.open_states(1)
        if allocate:
            for g in self.states:
                self.w(f"{keep}{P.ident(g)} = np.zeros({self.rows_shape(['n_steps', 'n_rows'], g)})", 1)
        self.w("for t in range(n_steps):", 1)
        self.frames("t", 2, masks=masks)
        for g in self.states:
            self.w(f"{P.group(g)} = {P.group(g)}[:na]", 2)
            if keep:
                self.w(f"{keep}{P.ident(g)}[t, :na] = {P.group(g)}", 2)

    def step_values(self, indent: int) -> None:
        self.w(f"values = {self.step_call('joint_values', [])}", indent)

    def logp_kernel(self) -> None:
        dem = self.dem
        dem.kernel("sequence_logp", "sequence_logp",
                   "log p of each sequence (rows sorted longest first): the sum over its steps of log p(step | "
                   "the past), the states carried from each step to the next.")
        self.forward_loop()
        self.step_values(2)
        self.w(f"out[:na] += values[{self.index(self.prog.logp)}]", 2)
        self.advance(2)

    def backward_kernel(self) -> None:
        dem = self.dem
        dem.kernel("sequence_backward", "sequence_backward",
                   "log p of each sequence into `out`, and g_<param> += d/dparam of sum_r seed[r] log p_r: the "
                   "forward pass keeps the states before every step, then reverse mode runs the steps backwards "
                   "(backpropagation through time).")
        self.forward_loop(keep="kept_", allocate=True)
        self.step_values(2)
        self.w(f"out[:na] += values[{self.index(self.prog.logp)}]", 2)
        self.advance(2)
        for g in self.states:
            self.w(f"dn_{P.ident(g)} = np.zeros({self.rows_shape(['n_rows'], g)})", 1)
        self.w("for t in range(n_steps - 1, -1, -1):", 1)
        self.frames("t", 2)
        for g in self.states:
            self.w(f"{P.group(g)} = np.ascontiguousarray(kept_{P.ident(g)}[t, :na])", 2)
            self.w(f"dx_{P.ident(g)} = np.zeros({self.rows_shape(['na'], g)})", 2)
        extra = (["np.ascontiguousarray(seed[:na])"]
                 + [f"np.ascontiguousarray(dn_{P.ident(g)}[:na])" for g in self.states]
                 + abi.parameter_names(("grads",), dem.orders)
                 + [f"dx_{P.ident(g)}" for g in self.states])
        self.w(self.step_call("step_backward", extra), 2)
        for g in self.states:
            self.w(f"dn_{P.ident(g)}[:na] = dx_{P.ident(g)}", 2)
        for g in self.states:  # every sequence's state before its first step is the start parameter
            self.w("for r in range(n_rows):", 1)
            self.w(f"g_{P.ident(self.start[g])} += dn_{P.ident(g)}[r]", 2)

    def sample_kernel(self) -> None:
        dem = self.dem
        dem.kernel("sequence_sample", "sequence_sample",
                   "Draw every sequence step by step (rows sorted longest first): each step's groups given the "
                   "states, where ms_<group> is set the value in xs_<group> is kept (clamped), then the states "
                   "advance.")
        self.forward_loop(masks=True)
        masks = [f"m_{P.ident(g)}" for g in dem.orders["directed"]]
        self.w(self.step_call("sample_model", masks + ["rng"]), 2)
        for g in self.steps:
            self.w(f"xs_{P.ident(g)}[:na, t] = {P.group(g)}", 2)
        self.step_values(2)
        self.advance(2)

    def kernels(self) -> None:
        self.step_backward()
        if self.energy_groups:
            self.states_kernel()
            self.cd_kernel()
            self.gibbs_sample_kernel()
            return
        self.logp_kernel()
        self.backward_kernel()
        self.sample_kernel()

    # a per-step energy (an RBM at every step: RNN-RBM) ------------------------------------------
    def energy_call(self, kernel: str, spec: str, extra: dict[str, str]) -> str:
        """A call of an energy kernel on the step's rows: x_<group> for the step's groups and
        states, then the families of its spec from `extra` (a family -> its text per group)."""
        args = []
        for fam in abi.SPECS[spec]:
            value = extra.get(fam)
            if value is None:  # the model's own: state, params, sizes, consts, grads
                args += abi.parameter_names((fam,), self.dem.orders)
            elif callable(value):
                args += [value(g) for g in self.energy_groups]
            else:
                args.append(value)
        return f"{kernel}(" + ", ".join(args) + ")"

    def flags(self, free: set) -> callable:
        return lambda g: "True" if g in free else "False"

    def masks(self, kept: set) -> callable:
        """Element masks: the states (and `kept` groups) held, the others free."""
        return lambda g: f"ones_{P.ident(g)}" if g in kept or g in self.states else f"zeros_{P.ident(g)}"

    def open_masks(self, indent: int) -> None:
        for g in self.energy_groups:
            shape = self.rows_shape(["na"], g)
            self.w(f"ones_{P.ident(g)} = np.ones({shape}, np.uint8)", indent)
            self.w(f"zeros_{P.ident(g)} = np.zeros({shape}, np.uint8)", indent)

    def hidden_means(self, indent: int, x: str = "x") -> None:
        """The step's latent groups at their conditional means given the rest (one exact pass:
        they are conditionally independent given the visibles and the states)."""
        hidden = set(self.hidden)
        extra = {"masks": self.masks(set(self.energy_groups) - hidden), "free": self.flags(hidden),
                 "damping": "0.0", "tol": "0.0", "max_iter": "1"}
        self.w(self.energy_call("mean_field", "mean_field", extra).replace("x_", f"{x}_"), indent)

    def states_kernel(self) -> None:
        self.dem.kernel("sequence_states", "sequence_states",
                        "The states before every step of every sequence (rows sorted longest first), into "
                        "kept_<state>[t, r].")
        self.forward_loop(keep="kept_")
        self.step_values(2)
        self.advance(2)

    def cd_kernel(self) -> None:
        dem = self.dem
        dem.kernel("sequence_cd", "sequence_cd",
                   "Contrastive divergence at every step, backpropagated through time (Boulanger-Lewandowski et "
                   "al. 2012): g_<param> += seed-weighted CD-k estimates of d log p(v_t | past)/dparam for the "
                   "step's energy, and through the states, whose adjoint at each step is the CD estimate of "
                   "d log p(v_t | u)/du = f_u(data) - f_u(model) plus what the later steps send back. "
                   "out[r] += sum over steps of F(v_t^-) - F(v_t), the free-energy gap CD descends. With "
                   "`persistent` (PCD) the model's side starts from each frame's chain in cs_<group> and leaves "
                   "its last state there. Given the "
                   "states (which depend on the data only), the steps' chains are independent: they run as one "
                   "batch of every frame (rng holds a stream per frame).")
        self.forward_loop(keep="kept_", allocate=True)
        self.step_values(2)
        self.advance(2)
        self.w("# every frame of every sequence, in step order (first[t]: the row of step t's first frame)", 1)
        self.w("n_frames = 0", 1)
        self.w("for r in range(n_rows):", 1)
        self.w("n_frames += lengths[r]", 2)
        self.w("first = np.zeros(n_steps + 1, np.int64)", 1)
        for g in self.energy_groups:
            self.w(f"{P.group(g)} = np.zeros({self.rows_shape(['n_frames'], g)})", 1)
        self.w("w = np.zeros(n_frames)", 1)
        self.w("pos = 0", 1)
        self.w("for t in range(n_steps):", 1)
        self.w("na = _k.active_rows(lengths, t)", 2)
        self.w("first[t] = pos", 2)
        for g in self.steps_energy:
            if g not in self.hidden:
                self.w(f"{P.group(g)}[pos:pos + na] = xs_{P.ident(g)}[:na, t]", 2)
        for g in self.states:
            self.w(f"{P.group(g)}[pos:pos + na] = kept_{P.ident(g)}[t, :na]", 2)
        self.w("w[pos:pos + na] = seed[:na]", 2)
        self.w("pos += na", 2)
        self.w("first[n_steps] = pos", 1)
        ind = 1
        self.w("na = n_frames", ind)
        self.open_masks(ind)
        self.w("# the data's side: the latents at their means, -dF/dparam and f_<state> = -dF/d<state>", ind)
        self.hidden_means(ind)
        self.w(self.energy_call("energy_grad_rows", "energy_grad_rows", {"weights": "-w"}), ind)
        for g in self.states:
            self.w(f"adj_{P.ident(g)} = np.zeros({self.rows_shape(['na'], g)})", ind)
            self.w(f"q_{P.ident(g)} = np.zeros({self.rows_shape(['na'], g)})", ind)
            self.w(self.field_call(g, "x", f"adj_{P.ident(g)}"), ind)
        self.w("free_data = np.zeros(na)", ind)
        self.w(self.free_energy_call("x", "free_data"), ind)
        self.w("# the model's side: k Gibbs sweeps from the data, the states held", ind)
        for g in self.energy_groups:
            self.w(f"y_{P.ident(g)} = {P.group(g)}.copy()", ind)
        self.w("if persistent:  # PCD: each frame's chain goes on from where its last update left it", ind)
        self.gather_chains(ind + 1, "y_", "cs_")
        hidden = set(self.hidden)
        first = {"masks": self.masks(set(self.energy_groups) - hidden), "free": self.flags(hidden),
                 "rng": "rng", "steps": "1"}
        self.w(self.energy_call("gibbs", "gibbs", first).replace("x_", "y_"), ind)
        sweeps = {"masks": self.masks(set()), "free": self.flags(set(self.steps_energy)), "rng": "rng",
                  "steps": "k"}
        self.w(self.energy_call("gibbs", "gibbs", sweeps).replace("x_", "y_"), ind)
        self.w("if persistent:", ind)
        self.gather_chains(ind + 1, "y_", "cs_", back=True)
        self.hidden_means(ind, "y")
        self.w(self.energy_call("energy_grad_rows", "energy_grad_rows", {"weights": "w"}).replace("x_", "y_"), ind)
        for g in self.states:
            self.w(f"f_model = np.zeros({self.rows_shape(['na'], g)})", ind)
            self.w(self.field_call(g, "y", "f_model"), ind)
            self.w(f"adj_{P.ident(g)} -= f_model", ind)
            self.w("for r in range(na):", ind)
            self.w(f"adj_{P.ident(g)}[r] *= w[r]", ind + 1)
        self.w("free_model = np.zeros(na)", ind)
        self.w(self.free_energy_call("y", "free_model"), ind)
        self.w("# through the recurrence, last step first: the states after a step send back dn_<state>", ind)
        for g in self.states:
            self.w(f"dn_{P.ident(g)} = np.zeros({self.rows_shape(['n_rows'], g)})", 1)
        self.w("for t in range(n_steps - 1, -1, -1):", 1)
        ind = 2
        self.frames("t", ind)
        self.w("at = first[t]", ind)
        self.w("out[:na] += free_model[at:at + na] - free_data[at:at + na]", ind)
        for g in self.states:
            self.w(f"{P.group(g)} = np.ascontiguousarray(kept_{P.ident(g)}[t, :na])", ind)
            self.w(f"dx_{P.ident(g)} = np.zeros({self.rows_shape(['na'], g)})", ind)
        extra = (["np.zeros(na)"] + [f"np.ascontiguousarray(dn_{P.ident(g)}[:na])" for g in self.states]
                 + abi.parameter_names(("grads",), dem.orders) + [f"dx_{P.ident(g)}" for g in self.states])
        self.w(self.step_call("step_backward", extra), ind)
        for g in self.states:
            self.w(f"dn_{P.ident(g)}[:na] = dx_{P.ident(g)} + adj_{P.ident(g)}[at:at + na]", ind)
        for g in self.states:
            self.w("for r in range(n_rows):", 1)
            self.w(f"g_{P.ident(self.start[g])} += dn_{P.ident(g)}[r]", 2)

    def gather_chains(self, ind: int, flat: str, padded: str, back: bool = False) -> None:
        """Copy the persistent chains' frames into the batch of every frame (or back)."""
        self.w("for t in range(n_steps):", ind)
        self.w("nt = first[t + 1] - first[t]  # the sequences running at step t", ind + 1)
        for g in self.steps_energy:
            if g in self.hidden:
                continue
            a, b = f"{flat}{P.ident(g)}[first[t]:first[t + 1]]", f"{padded}{P.ident(g)}[:nt, t]"
            self.w(f"{b} = {a}" if back else f"{a} = {b}", ind + 1)

    def grads(self) -> str:
        return ", ".join(abi.parameter_names(("grads",), self.dem.orders))

    def field_call(self, g: str, x: str, f: str) -> str:
        state = ", ".join(n.replace("x_", f"{x}_", 1) for n in abi.parameter_names(("state",), self.dem.orders))
        rest = ", ".join(abi.parameter_names(("params", "sizes", "consts"), self.dem.orders))
        real = self.dem.plan.ir.groups[g].domain == "real"
        return f"field_{g}({state}, {rest}, {f}" + (f", q_{P.ident(g)})" if real else ")")

    def free_energy_call(self, x: str, out: str) -> str:
        hidden = set(self.hidden)
        extra = {"summed": self.flags(hidden), "beta": "1.0", "out": out}
        return self.energy_call("free_energy", "free_energy", extra).replace("x_", f"{x}_")

    def gibbs_sample_kernel(self) -> None:
        dem = self.dem
        dem.kernel("sequence_gibbs_sample", "sequence_gibbs_sample",
                   "Draw every sequence step by step (rows sorted longest first): k block-Gibbs sweeps of the "
                   "step's energy given the states, where ms_<group> is set the value in xs_<group> kept "
                   "(clamped), then the states advance.")
        self.forward_loop(masks=True)
        for g in self.states:
            self.w(f"m_{P.ident(g)} = np.ones({self.rows_shape(['na'], g)}, np.uint8)", 2)
        hidden = set(self.hidden)
        first = {"masks": lambda g: f"m_{P.ident(g)}", "free": self.flags(hidden), "rng": "rng", "steps": "1"}
        self.w(self.energy_call("gibbs", "gibbs", first), 2)
        sweeps = {"masks": lambda g: f"m_{P.ident(g)}", "free": self.flags(set(self.steps_energy)),
                  "rng": "rng", "steps": "k"}
        self.w(self.energy_call("gibbs", "gibbs", sweeps), 2)
        for g in self.steps:
            self.w(f"xs_{P.ident(g)}[:na, t] = {P.group(g)}", 2)
        self.step_values(2)
        self.advance(2)

    def class_attributes(self) -> list[str]:
        return [
            f"TIME_AXIS = {self.seq.axis!r}",
            f"STEPS = {tuple(self.steps)!r}  # the groups along the time axis, one frame per step",
            f"STATES = {tuple((s, self.start[s]) for s in self.states)!r}  # (state, the parameter it starts from)",
        ]
