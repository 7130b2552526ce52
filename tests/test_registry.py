import sys
from pathlib import Path

import pytest

from magbench.errors import UnknownNameError
from magbench.registry import METHODS, Registry, list_methods

sys.path.insert(0, str(Path(__file__).parent / "plugins"))


def test_builtin_sanity_methods_are_listed():
    assert {"oracle", "repeat-last", "replay-context"} <= set(list_methods())


def test_unknown_method_suggests_the_closest_names():
    with pytest.raises(UnknownNameError, match="Did you mean: replay-context"):
        METHODS.get("replay-contxt")


def test_pattern_filters_names():
    assert list_methods("repeat*") == ["repeat-last"]
    assert "replay-context" in list_methods("replay")


def test_module_colon_attribute_loads_a_local_class():
    cls = METHODS.get("magbench.baselines.sanity:RepeatLast")
    assert cls.__name__ == "RepeatLast"
    with pytest.raises(UnknownNameError, match="has no attribute"):
        METHODS.get("magbench.baselines.sanity:Nope")


def test_decorator_registers_and_duplicate_names_are_refused():
    reg = Registry("thing", "magbench.test-group-that-does-not-exist")

    @reg.register("a")
    class A:
        pass

    assert reg.get("a") is A
    with pytest.raises(Exception, match="registered twice"):
        reg.register("a")(type("B", (), {}))


def test_registry_names_the_class_at_registration_and_at_lookup_by_path():
    from magbench.baselines.sanity import ReplayContext

    assert ReplayContext.name == "replay-context"
    slow = METHODS.get("magbench_test_methods:GatedReplay")
    assert slow.name == "magbench_test_methods:GatedReplay" and ReplayContext.name == "replay-context"


def test_method_path_that_is_not_a_method_class_says_so():
    from magbench.errors import MagbenchError

    with pytest.raises(MagbenchError, match="not a subclass of magbench.method.Method"):
        METHODS.get("magbench.harness:sample_seed")
    reg = Registry("thing", "magbench.test-group-that-does-not-exist", base="magbench.method:Method")
    with pytest.raises(MagbenchError, match="not a subclass"):
        reg.register("x")(type("NotAMethod", (), {}))
