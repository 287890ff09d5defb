"""The one registry of trnlab's variables: name -> (units, long_name).

Every Dataset the engine builds takes its ``units`` and ``long_name`` attrs from here; units
follow the grammar of :mod:`trnlab.units` (pint with FLOP, USD, token, chip).
"""

from __future__ import annotations

from typing import Any

from trnlab.errors import ParameterError, bad_value

#: layout and batch axes
LAYOUT = {
    "tp": ("1", "tensor-parallel degree"),
    "pp": ("1", "pipeline-parallel degree"),
    "dp": ("1", "data-parallel degree"),
    "cp": ("1", "context-parallel degree"),
    "ep": ("1", "expert-parallel degree"),
    "adp": ("1", "attention data-parallel degree"),
    "vpp": ("1", "interleaved pipeline chunks per stage"),
    "zero": ("1", "ZeRO stage (3 = FSDP)"),
    "recompute": ("1", "activation recompute: 0 none, 1 selective, 2 full"),
    "micro_batch": ("sequence", "sequences per micro-batch"),
    "global_batch": ("sequence", "sequences per step"),
    "seq_len": ("token", "sequence length"),
    "batch": ("request", "requests in flight per replica"),
    "system": ("1", "scale-up system"),
    "chip": ("1", "chip"),
    "precision": ("1", "GEMM precision"),
    "vendor": ("1", "chip vendor (catalog)"),
}
#: outputs of the training step model (:func:`trnlab.perf.train.train_step`)
TRAINING = {
    "step_time": ("s", "time per optimizer step"),
    "tokens_per_s_per_chip": ("token/s", "training tokens per second per chip"),
    "model_flops_per_chip": ("FLOP/s", "model FLOPs (causal, no recompute) per second per chip"),
    "mfu": ("1", "model FLOPs utilisation vs the dense peak at the training precision"),
    "hfu": ("1", "hardware FLOPs utilisation (recompute counted)"),
    "mem_per_chip": ("B", "memory per chip (weights, gradients, optimizer, activations)"),
    "t_compute": ("s", "compute per step (GEMMs, attention, memory-bound ops)"),
    "t_tp": ("s", "exposed tensor-parallel communication per step"),
    "t_ep": ("s", "exposed expert-parallel all-to-all per step"),
    "t_cp": ("s", "exposed context-parallel communication per step"),
    "t_offload": ("s", "exposed copies of offloaded activations to and from host memory per step"),
    "t_pp": ("s", "exposed pipeline send/recv per step"),
    "t_dp": ("s", "exposed data-parallel communication per step"),
    "t_bubble": ("s", "pipeline bubble per step"),
    "t_optimizer": ("s", "optimizer update per step"),
    "t_overhead": ("s", "fixed overhead per step"),
    "n_microbatches": ("1", "micro-batches per step and pipeline"),
    "fits": ("1", "fits in HBM"),
    "reason": ("1", "0 = valid; see reason_names"),
    "pareto": ("1", "on the memory-vs-speed Pareto front"),
}
#: outputs of the serving model (:func:`trnlab.perf.serve.serve`) and the SLO frontier
SERVING = {
    "ttft": ("s", "time to first token"),
    "tpot": ("s", "time per output token"),
    "output_tokens_per_s": ("token/s", "output tokens per second of the replica"),
    "input_tokens_per_s": ("token/s", "prompt tokens per second of the replica"),
    "output_tokens_per_s_per_chip": ("token/s", "output tokens per second per chip"),
    "input_tokens_per_s_per_chip": ("token/s", "prompt tokens per second per chip"),
    "prefill_fraction": ("1", "fraction of replica time spent in prefill"),
    "kv_per_token": ("B/token", "KV-cache bytes per token per chip"),
    "weights_per_chip": ("B", "weight bytes per chip"),
    "max_concurrency": ("request", "requests whose KV cache fits beside the weights"),
    "chip_s_per_m_tokens": ("chip*s", "chip-seconds per million output tokens"),
    "usd_per_m_tokens": ("USD", "USD per million output tokens"),
}
#: outputs of the mixed-rack study (:mod:`trnlab.studies.trainium4`)
HETERO = {
    "tokens_per_s_per_rack": ("token/s", "tokens per second per rack (output tokens serving, "
                              "training tokens, rollout tokens RL)"),
    "tokens_per_joule": ("token/J", "tokens per joule of facility energy"),
    "share": ("1", "share of the rack's chips in the first role (prefill, attention, rollouts)"),
    "chips_per_rack": ("chip", "chips per rack"),
    "gain": ("1", "best mixed rack / best homogeneous rack (> 1: mixed better)"),
    "gain_prob": ("1", "probability that the mixed rack is better"),
    "gain_central": ("1", "best mixed / best homogeneous rack at the central inputs"),
    "tornado_gain": ("1", "best mixed / best homogeneous rack with one input at an end of its "
                     "range"),
}
#: outputs of the rack-level peer table (:mod:`trnlab.studies.peers`)
PEERS = {
    "rack_chips": ("chip", "chips per rack"),
    "rack_peak_bf16": ("FLOP/s", "dense BF16 peak per rack"),
    "rack_peak_fp8": ("FLOP/s", "dense FP8-class peak per rack"),
    "rack_peak_fp4": ("FLOP/s", "dense FP4-class peak per rack (the FP8 rate where no faster "
                      "FP4 path)"),
    "rack_hbm_capacity": ("B", "HBM capacity per rack"),
    "rack_hbm_bandwidth": ("B/s", "HBM bandwidth per rack"),
    "rack_power": ("W", "IT power per rack at full load (chips x TDP x (1 + overhead))"),
    "rack_price": ("USD/h", "listed on-demand price per rack-hour"),
    "rack_tokens_per_s": ("token/s", "output tokens per second per rack at the SLO"),
    "rack_tokens_per_joule": ("token/J", "output tokens per joule of facility energy"),
    "rack_usd_per_m_tokens": ("USD", "USD per million output tokens (TCO, else list price)"),
}
#: outputs of training at scale (:mod:`trnlab.engine.scale`, :mod:`trnlab.studies.scale`)
SCALE = {
    "n_chips": ("chip", "chips in the job"),
    "batch_tokens": ("token", "tokens per optimizer step"),
    "step_fraction": ("1", "share of the step time"),
    "job_mtbf": ("s", "mean time between job-interrupting failures"),
    "checkpoint_interval": ("s", "checkpoint interval (Daly optimum)"),
    "goodput": ("1", "useful training time / wall time"),
    "days_to_train": ("day", "wall-clock days to train"),
    "facility_power": ("W", "facility power of the job (chips, hosts, network, spares, cooling)"),
    "network_power": ("W", "scale-out switches and optics"),
    "power_swing": ("W", "facility power step when the job stops or restarts"),
    "training_energy": ("J", "facility energy of the training run"),
    "switches": ("1", "scale-out switches"),
}
VARIABLES = {**LAYOUT, **TRAINING, **SERVING, **HETERO, **PEERS, **SCALE}
#: the parts of the step time, in the order they add up
BREAKDOWN = ("t_compute", "t_tp", "t_ep", "t_cp", "t_offload", "t_pp", "t_dp", "t_bubble",
             "t_optimizer", "t_overhead")
#: the parts of the step that move data (links and memory) rather than compute
TRANSFER = ("t_tp", "t_ep", "t_cp", "t_offload", "t_pp", "t_dp", "t_optimizer")


def attrs(name: str, long_name: str | None = None, **extra: Any) -> dict[str, Any]:
    """``{"units", "long_name"}`` of ``name`` from the registry (``long_name`` overrides the
    registered one, e.g. to add "of the best layout"); ``extra`` attrs are added."""
    if name not in VARIABLES:
        raise ParameterError(bad_value("variables", "name", name,
                                       "a variable of trnlab.engine.variables.VARIABLES"))
    units, registered = VARIABLES[name]
    return {"units": units, "long_name": long_name or registered, **extra}
