"""Compatibility shim for the Syncano Python SDK (syncano==5.4.6) on Python 3.8+.

This lives in the TEST HARNESS on purpose: it patches the client library, not Herald. Herald needs
nothing from it.

The problem. Python 3 gives a class body an implicit ``__class__`` cell whenever one of its methods
mentions ``super`` (e.g. ``super(Class, self).save()`` in ``syncano/models/classes.py``). The cell
reaches the metaclass as ``attrs['__classcell__']`` and must be passed on to ``type.__new__``, which
fills it with the new class. The SDK's ``ModelMetaclass.__new__``
(``syncano/models/archetypes.py``) calls ``type.__new__`` with only ``{'__module__': module}`` and
adds the other attributes afterwards, so the cell is dropped. Python 3.6/3.7 only warned about that;
since 3.8 it is a ``RuntimeError`` ("__class__ not set defining 'Class' ... Was __classcell__
propagated to type.__new__?") and ``import syncano.models`` fails.

The fix. Wrap ``ModelMetaclass.__new__`` so that it takes ``__classcell__`` out of the class
attributes, lets the SDK build the class as usual, and then fills the cell with the class it built
(what ``type.__new__`` would have done). Nothing else in the SDK is changed.

The wrapper has to be in place before the first model class is defined, and ``ModelMetaclass`` is
defined in the same package whose ``__init__`` defines every model. So ``install()`` registers an
import hook that patches ``syncano.models.archetypes`` right after that module runs and before
``syncano.models`` goes on to the modules that define models. Call ``install()`` before importing
anything from ``syncano``.
"""

import importlib.abc
import importlib.machinery
import sys

_TARGET = "syncano.models.archetypes"
_patched = False


def _propagate_classcell(metaclass):
    original_new = metaclass.__new__  # the plain function behind the implicit staticmethod

    def __new__(mcs, name, bases, attrs):
        classcell = attrs.pop("__classcell__", None)
        new_class = original_new(mcs, name, bases, attrs)
        if classcell is not None:
            classcell.cell_contents = new_class
        return new_class

    metaclass.__new__ = staticmethod(__new__)


class _PatchArchetypes(importlib.abc.MetaPathFinder):
    """Finds syncano.models.archetypes as usual and patches it once it has been executed."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        exec_original = spec.loader.exec_module

        def exec_module(module):
            global _patched
            exec_original(module)
            _propagate_classcell(module.ModelMetaclass)
            _patched = True

        spec.loader.exec_module = exec_module
        return spec


def install():
    """Installs the hook (Python 3.8+ only). Must run before ``syncano.models`` is imported."""
    if sys.version_info < (3, 8):
        return
    if any(name == "syncano.models" or name.startswith("syncano.models.") for name in sys.modules):
        raise RuntimeError("shim.install() must run before syncano.models is imported")
    if not any(isinstance(finder, _PatchArchetypes) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PatchArchetypes())


def check():
    """Raises unless the SDK was imported through the patched metaclass (Python 3.8+)."""
    if sys.version_info >= (3, 8) and not _patched:
        raise RuntimeError("the __classcell__ shim was not applied to " + _TARGET)
