"""The CIFAR / Tiny-ImageNet model zoo of RepDistiller, behind one registry.

Every model returns :class:`ModelOutput` (logits, features, pre-activation features).
"""

# imported for their registrations, in the order `sot-ray models` lists them
from . import resnet_cifar, resnet_imagenet, wrn, vgg, mobilenetv2, shufflenet  # noqa: F401, I001
from .base import ModelOutput
from .registry import ModelSpec, count_parameters, create_model, get_spec, list_models, register

__all__ = [
    "ModelOutput", "ModelSpec", "count_parameters", "create_model", "get_spec", "list_models",
    "register",
]
