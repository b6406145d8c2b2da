"""freezetune inside other trainers: ``apply`` for any loop, a ``TrainerCallback`` for ``transformers.Trainer``
and TRL, and plan exports for axolotl, LLaMA-Factory and PEFT.

The callback's module imports transformers; it loads on first use (``freezetune.FreezetuneCallback``).
"""
