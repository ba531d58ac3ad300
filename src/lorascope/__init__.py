"""lorascope: does LoRA keep a model closer to its base than full fine-tuning, and what does serving adapters cost?

Fine-tunes text classifiers with LoRA and full fine-tuning, measures how far each moves the
model's layer-wise representations from the base model (CKA, cosine, with honest statistics),
and measures what serving LoRA adapters separately costs.

The Python API (every name is imported on first use, so ``import lorascope`` is cheap)::

    import lorascope
    record = lorascope.run_train(lorascope.TrainConfig(task="sst2", method="lora"), "runs/demo")  # a RunRecord
    states = lorascope.encode("runs/demo", ["a gripping film"])   # [layers + 1, 1, d]
"""

from lorascope._lazy import lazy_exports

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first use.
_EXPORTS = {
    # tasks and data
    "get_task": ".data.tasks",
    "TaskSpec": ".data.tasks",
    "load_split": ".data.load",
    # fine-tuning
    "TrainConfig": ".train.config",
    "run_train": ".train.run",
    "HpoConfig": ".hpo.config",
    "run_hpo": ".hpo.search",
    "HpoRecord": ".hpo.record",
    "load_classifier": ".models.load",
    "load_run": ".models.load",
    "RunFolder": ".run_folder",
    "RunRecord": ".run_folder",
    # representations and drift
    "encode": ".represent.encode",
    "RepresentConfig": ".represent.config",
    "SampleSettings": ".represent.config",
    "run_represent": ".represent.run",
    "DriftConfig": ".drift.config",
    "DriftSettings": ".drift.config",
    "run_drift": ".drift.run",
    "DriftRecord": ".drift.record",
    "linear_cka": ".similarity.cka",
    "linear_cka_layers": ".similarity.cka",
    "layer_similarity": ".similarity.layers",
    "mean_cosine": ".similarity.cosine",
    # the other lenses: weights, forgetting, probes
    "matrix_update": ".weight_update.update",
    "intruder_similarity": ".weight_update.intruders",
    "WeightLensConfig": ".lenses.config",
    "run_weight_lens": ".lenses.weights",
    "ForgettingConfig": ".lenses.config",
    "run_forgetting": ".lenses.forgetting",
    "ProbeConfig": ".lenses.config",
    "run_probe_retention": ".lenses.probes",
    "WeightsRecord": ".lenses.records",
    "ForgettingRecord": ".lenses.records",
    "ProbesRecord": ".lenses.records",
    # statistics
    "StatisticsSettings": ".stats.settings",
    "paired_t_test": ".stats.paired",
    "sign_flip_test": ".stats.permutation",
    "hierarchical_interval": ".stats.hierarchical",
    "seeds_needed": ".stats.power",
    # serving
    "BenchConfig": ".bench.config",
    "run_bench": ".bench.run",
    "BenchRecord": ".bench.record",
    "MultiAdapterRuntime": ".serve.runtime",
    # studies
    "StudyConfig": ".study.config",
    "load_study": ".study.config",
    "run_study": ".study.runner",
    "build_report": ".report.build",
    "SummaryRecord": ".report.record",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = ["__version__", *_EXPORTS]
