"""The models: the built-in networks, timm's, and the registry that names them all.

registry.py     every model name (built-in, plugin file or module, entry point, timm:NAME)
builtin.py      the built-in networks: base and improved CNN, ResNet-18, FastNet
timm_models.py  timm's models as timm:NAME (the optional extra)
"""

from cifarlab import _exports

__getattr__, __dir__ = _exports(
    __name__,
    {
        "build_model": "registry",
        "register_model": "registry:register",
        "describe_models": "registry",
        "count_parameters": "builtin",
    },
)
