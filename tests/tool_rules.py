"""Other trainers' rules for which parameters train, transcribed from their sources (they do not install here).

- axolotl-ai-cloud/axolotl, src/axolotl/utils/freeze.py: ``LayerNamePattern`` escapes every
  ``.`` not followed by ``+`` and matches with ``re.match``; ``freeze_layers_except`` trains what
  any pattern matches.
- hiyouga/LLaMA-Factory, src/llamafactory/model/adapter.py: ``_setup_freeze_tuning`` trains the
  last n (or first -n) layers' ``.{i}.{module}`` and the extra modules, by substring; it raises on
  a module name that is not a block's first-level module or an outer module's last name.
"""

import re


def axolotl_trains(names, patterns: list[str]) -> set[str]:
    """axolotl's freeze_layers_except, on parameter names."""
    compiled = [re.compile(re.sub(r"\.(?!\+)", "\\.", p)) for p in patterns]
    return {n for n in names if any(c.match(n) for c in compiled)}


def llama_factory_trains(model, keys: dict) -> set[str]:
    """LLaMA-Factory's _setup_freeze_tuning, on names only (its checks included)."""
    num_layers = model.config.num_hidden_layers
    n = keys["freeze_trainable_layers"]
    ids = range(max(0, num_layers - n), num_layers) if n > 0 else range(min(-n, num_layers))
    names = [name for name, _ in model.named_parameters()]
    hidden = {name.split(".0.")[-1].split(".")[0] for name in names if ".0." in name}
    outer = {name.split(".")[-2] for name in names if re.search(r"\.\d+\.", name) is None}
    trainable = []
    for module in keys["freeze_trainable_modules"].split(","):
        assert module == "all" or module in hidden, f"LLaMA-Factory raises: module {module} is not found"
        trainable += [f".{i}.{'' if module == 'all' else module}" for i in ids]
    for module in filter(None, (keys.get("freeze_extra_modules") or "").split(",")):
        assert module in outer, f"LLaMA-Factory raises: module {module} is not found"
        trainable.append(module)
    return {name for name in names if any(t in name for t in trainable)}
