"""The shared ``__repr__``, ``__eq__`` and ``__hash__`` behave as the ones attrs would have
written for the class: the same text, the same equality, equal hashes for equal instances."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow._wire.model import S3ObjectRef, UserContext


def _frozen_pair() -> tuple[type[Any], type[Any]]:
    """The same frozen class twice: attrs' own ``__repr__``, then the shared one."""

    def make(shared: bool) -> type[Any]:
        class Thing:
            if shared:
                __repr__ = fields_repr
                __eq__ = fields_eq
                __hash__ = fields_hash

            name: Any
            count: Any = 0
            secret: Any = attrs.field(default="hidden", repr=False, eq=False)
            shown: Any = attrs.field(default=3, repr=lambda v: f"<{v}>", eq=str.lower)
            later: Any = attrs.field(init=False)
            inner: Any = attrs.field(default=None, hash=False)

        return attrs.frozen(Thing)

    return make(False), make(True)


def _mutable_pair() -> tuple[type[Any], type[Any]]:
    def make(shared: bool) -> type[Any]:
        class Node:
            if shared:
                __repr__ = fields_repr

            label: Any
            child: Any = None
            _private: Any = attrs.field(default=1, alias="private")

        return attrs.define(eq=False)(Node)

    return make(False), make(True)


@attrs.frozen
class Parent:
    __repr__ = fields_repr

    a: int


@attrs.frozen
class Child(Parent):
    __repr__ = fields_repr

    b: str = "x"


@attrs.frozen
class AttrsChild(Parent):
    b: str = "x"


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(values, values, values, values)
def test_a_frozen_class_reads_as_attrs_writes_it(
    name: object, count: object, shown: object, inner: object
) -> None:
    generated, shared = _frozen_pair()
    assert "<attrs generated" in generated.__repr__.__code__.co_filename
    assert vars(shared)["__repr__"] is fields_repr
    one = generated(name, count, shown=shown, inner=inner)
    two = shared(name, count, shown=shown, inner=inner)
    # An unset init=False field shows as NOTHING in both.
    assert repr(one) == repr(two)
    object.__setattr__(one, "later", inner)
    object.__setattr__(two, "later", inner)
    assert repr(one) == repr(two)


hashables = st.none() | st.booleans() | st.integers(-3, 3) | st.floats() | st.sampled_from("aAb")
texts = st.sampled_from(["a", "A", "b"])


@given(
    st.tuples(hashables, hashables, texts, texts, hashables),
    st.tuples(hashables, hashables, texts, texts, hashables),
)
def test_equality_and_hash_are_as_attrs_makes_them(
    left: tuple[Any, ...], right: tuple[Any, ...]
) -> None:
    generated, shared = _frozen_pair()
    assert "<attrs generated" in generated.__eq__.__code__.co_filename
    assert vars(shared)["__eq__"] is fields_eq
    pairs = []
    for cls in (generated, shared):
        made = []
        for name, count, secret, shown, inner in (left, right):
            one = cls(name, count, secret, shown, inner)
            object.__setattr__(one, "later", 1)
            made.append(one)
        pairs.append(made)
    (g1, g2), (s1, s2) = pairs
    # eq=False (secret) is ignored, eq_key (shown, lower-cased) applies, hash=False (inner)
    # still counts for equality.
    assert (g1 == g2) is (s1 == s2)
    assert (g1 != g2) is (s1 != s2)
    same_g, same_s = g1, s1
    assert (g1 == same_g) is (s1 == same_s)  # NaN in a field: not equal, in both
    if s1 == s2:
        assert hash(s1) == hash(s2)
    assert s1.__eq__(g1) is NotImplemented
    assert s1 != g1


def test_a_mutable_class_with_shared_equality_is_unhashable() -> None:
    @attrs.define
    class Counter:  # noqa: PLW1641 - the point: no __hash__, as attrs makes it
        __eq__ = fields_eq

        count: int = 0

    assert Counter(1) == Counter(1)
    assert Counter(1) != Counter(2)
    with pytest.raises(TypeError, match="unhashable"):
        hash(Counter(1))


def test_a_cycle_shows_as_dots_and_nesting_shows_each_class() -> None:
    generated, shared = _mutable_pair()
    one, two = generated("a", generated("b")), shared("a", shared("b"))
    one.child.child, two.child.child = one, two
    assert (
        repr(one)
        == repr(two)
        == "Node(label='a', child=Node(label='b', child=..., _private=1), _private=1)"
    )
    assert repr([two, two]) == repr([one, one])


def test_inherited_fields_come_first_as_in_attrs() -> None:
    assert repr(Child(1, "y")) == repr(AttrsChild(1, "y")).replace("AttrsChild", "Child")


def test_a_repr_that_raises_leaves_no_trace() -> None:
    _, shared = _mutable_pair()

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    node = shared("a", Broken())
    with pytest.raises(RuntimeError):
        repr(node)
    node.child = None
    assert repr(node) == "Node(label='a', child=None, _private=1)"


def test_the_wire_classes_read_as_before() -> None:
    assert repr(S3ObjectRef("b", "k")) == (
        "S3ObjectRef(bucket='b', key='k', etag=None, version_id=None)"
    )
    assert repr(UserContext("u1")) == "UserContext(user_id='u1', permissions=(), metadata={})"
    assert S3ObjectRef("b", "k") == S3ObjectRef("b", "k") != S3ObjectRef("b", "k", etag="e")
    assert len({S3ObjectRef("b", "k"), S3ObjectRef("b", "k")}) == 1
    with pytest.raises(TypeError, match="unhashable"):
        hash(UserContext("u1"))  # metadata is a dict, as with attrs' own __hash__
