"""runs: what the commands do, as library calls — one run end to end, sweeps, predict, inspect, tables.

This is the application API that cli/ reaches through freezetune's lazy face
(``freezetune.runs.<name>``, imported only when a command runs, so ``--help`` stays light).
"""

from freezetune.integrations.plan_text import blocks_line
from freezetune.io.export import export_hf, export_peft
from freezetune.measure.units import format_bytes, format_duration
from freezetune.runs.finetuner import Finetuner
from freezetune.runs.inspect import inspect_model
from freezetune.runs.plan_export import export_plan
from freezetune.runs.predict import predict_file
from freezetune.runs.retention_check import checkpoint_retention
from freezetune.runs.run import RunCaches, RunResult, load_data, run_training
from freezetune.runs.score import plot_scores, score_training_data
from freezetune.runs.sizes import parse_sizes, run_sizes
from freezetune.runs.spec import RunSpec
from freezetune.runs.sweep import Sweep, run_sweep
from freezetune.runs.tables import results_table, run_table
from freezetune.strategies.registry import REGISTRY as STRATEGIES
from freezetune.strategies.registry import listing as strategy_listing
from freezetune.strategies.registry import resolve

__all__ = [
    "STRATEGIES", "Finetuner", "RunCaches", "RunResult", "RunSpec", "Sweep", "blocks_line", "checkpoint_retention",
    "export_hf", "export_peft", "export_plan", "format_bytes", "format_duration", "inspect_model", "load_data",
    "parse_sizes", "plot_scores", "predict_file", "results_table", "run_sizes", "run_sweep", "run_table",
    "run_training", "resolve", "score_training_data", "strategy_listing",
]
