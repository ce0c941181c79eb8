import subprocess
import sys

import pytest

import nvila
import nvila.finetune
import nvila.prune
from nvila.lazy import lazy_exports


@pytest.mark.parametrize("package", [nvila, nvila.finetune, nvila.prune])
def test_every_export_resolves_to_its_defining_module(package):
    for name in package.__all__:
        value = getattr(package, name)
        assert value is getattr(sys.modules[package._EXPORTS[name]], name)


def test_unknown_name_is_an_attribute_error_naming_the_package():
    getter = lazy_exports("pkg.sub", {"dumps": "json"})
    assert getter("dumps") is __import__("json").dumps
    with pytest.raises(AttributeError, match="'pkg.sub' has no attribute 'loads'"):
        getter("loads")


def test_importing_the_package_does_not_import_torch():
    code = "import sys, nvila, nvila.prune, nvila.finetune; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow  # a fresh interpreter importing transformers (~5 s); `make test-slow` and CI run it
def test_using_the_library_prints_no_import_time_warnings():
    """transformers imports torchao when it is installed; its kernel and pytree warnings stay off stderr."""
    use = "import nvila.models.nvila.modeling_nvila"  # imports transformers' modeling_utils, which imports torchao
    assert subprocess.run([sys.executable, "-c", use], capture_output=True, text=True, check=True).stderr == ""
