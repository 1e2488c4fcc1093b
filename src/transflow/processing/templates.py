"""Templates: named, ordered lists of steps, registered with decorators.

    registry = TemplateRegistry()
    audio = registry.template("audio-processing", output_bucket="my-outputs")

    @audio.step("transcode")
    def transcode(ctx: StepContext) -> None:
        ...

    @audio.step("fetch-cover", retry=StepRetry(on=(OSError,)), checkpoint=False)
    def fetch_cover(ctx: StepContext) -> None:
        ...

The processor looks a job's ``templateId`` up in the registry and runs the steps in the order
they were registered. Pure: no AWS, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import attrs

from transflow._wire.dunders import fields_eq, fields_hash, fields_repr
from transflow.errors import DuplicateTemplateError, TemplateDefinitionError, TemplateNotFoundError

if TYPE_CHECKING:
    from transflow.processing.context import StepContext
    from transflow.processing.retries import StepRetry

__all__ = ["Step", "StepFunction", "Template", "TemplateRegistry"]

StepFunction = Callable[["StepContext"], None]
"""What ``@template.step(name)`` decorates: a function of the `StepContext` that returns
nothing and raises to fail the job."""
F = TypeVar("F", bound=StepFunction)

# Step names appear in progress events, S3 results and logs: keep them plain.
_STEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")


@attrs.frozen
class Step:
    """One step of a template: a name, the function that does the work, whether its
    completion is checkpointed (a redelivered job then does not run it again) and how it is
    retried within one delivery (None: not at all)."""

    __repr__ = fields_repr
    __eq__ = fields_eq
    __hash__ = fields_hash

    name: str
    func: StepFunction
    checkpoint: bool = True
    retry: StepRetry | None = None


@attrs.define(eq=False)
class Template:
    """A template: an id, where its outputs go, an optional webhook, and its steps.

    Created by :meth:`TemplateRegistry.template`; add steps with :meth:`step`.
    """

    __repr__ = fields_repr

    template_id: str
    output_bucket: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = attrs.field(default=None, repr=False)
    description: str | None = None
    _steps: list[Step] = attrs.field(factory=list, alias="_steps", repr=False)

    @property
    def steps(self) -> tuple[Step, ...]:
        """The steps, in the order they run."""
        return tuple(self._steps)

    def step(
        self, name: str, *, checkpoint: bool = True, retry: StepRetry | None = None
    ) -> Callable[[F], F]:
        """Decorator: register ``func(ctx) -> None`` as the next step, called ``name``.

        ``checkpoint=False`` makes a redelivered job run the step again even when a previous
        delivery finished it (for non-deterministic work); ``retry`` retries it within the
        delivery on the errors it names (see :class:`StepRetry`)."""
        if not isinstance(checkpoint, bool):
            raise TemplateDefinitionError(
                f"step {name!r}: checkpoint must be True or False, not {checkpoint!r}"
            )
        if retry is not None and not _is_step_retry(retry):
            raise TemplateDefinitionError(
                f"step {name!r}: retry must be a StepRetry(...), not {retry!r}"[:300]
            )
        if not isinstance(name, str) or not _STEP_NAME.fullmatch(name):
            raise TemplateDefinitionError(
                f"step name {name!r} of template {self.template_id!r} is not valid: use 1-64 "
                "letters, digits, '_', '.', ':' or '-', starting with a letter or digit"
            )
        if any(existing.name == name for existing in self._steps):
            raise TemplateDefinitionError(
                f"template {self.template_id!r} already has a step {name!r}: step names are "
                "the keys of the results, so each must be unique"
            )

        def register(func: F) -> F:
            if not callable(func):
                raise TemplateDefinitionError(
                    f"@step({name!r}) must decorate a function taking the StepContext"
                )
            self._steps.append(Step(name, func, checkpoint, retry))
            return func

        return register

    def add_step(
        self,
        name: str,
        func: StepFunction,
        *,
        checkpoint: bool = True,
        retry: StepRetry | None = None,
    ) -> None:
        """Register a step without the decorator syntax."""
        self.step(name, checkpoint=checkpoint, retry=retry)(func)


def _is_step_retry(value: object) -> bool:
    # Only a step that retries loads the retry module (a cold start without one does not).
    from transflow.processing.retries import StepRetry  # noqa: PLC0415

    return isinstance(value, StepRetry)


def _check_webhook(
    template_id: str, url: str | None, secret: str | None, *, unsigned: bool
) -> None:
    if url is None:
        if secret is not None:
            raise TemplateDefinitionError(
                f"template {template_id!r} has a webhook_secret but no webhook_url"
            )
        if unsigned:
            raise TemplateDefinitionError(
                f"template {template_id!r} says unsigned=True but has no webhook_url"
            )
        return
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise TemplateDefinitionError(
            f"webhook_url {url!r} of template {template_id!r} must be an absolute http(s) URL"
        )
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise TemplateDefinitionError(
            f"webhook_secret of template {template_id!r} must be a non-empty string"
        )
    if secret is None and not unsigned:
        raise TemplateDefinitionError(
            f"webhook_url of template {template_id!r} has no webhook_secret: its receiver "
            "could not tell transflow's requests from anyone's. Pass webhook_secret= (and "
            "check requests with transflow.processing.webhooks.verify), or unsigned=True if "
            "the receiver authenticates requests another way"
        )
    if secret is not None and unsigned:
        raise TemplateDefinitionError(
            f"template {template_id!r} has a webhook_secret and unsigned=True: choose one"
        )


@attrs.define(eq=False)
class TemplateRegistry:
    """The templates a processor knows, by id."""

    __repr__ = fields_repr

    _templates: dict[str, Template] = attrs.field(factory=dict, alias="_templates")

    def template(
        self,
        template_id: str,
        *,
        output_bucket: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        unsigned: bool = False,
        description: str | None = None,
    ) -> Template:
        """Create and register a template; raises :class:`DuplicateTemplateError` when the
        id is taken.

        A ``webhook_url`` needs a ``webhook_secret`` to sign its requests with; pass
        ``unsigned=True`` instead only when the receiver authenticates requests another
        way (it is refused otherwise, with :class:`TemplateDefinitionError`)."""
        if not isinstance(template_id, str) or not template_id.strip():
            raise TemplateDefinitionError(
                f"template id must be a non-empty string, not {template_id!r}"
            )
        if template_id in self._templates:
            raise DuplicateTemplateError(template_id)
        _check_webhook(template_id, webhook_url, webhook_secret, unsigned=unsigned)
        template = Template(
            template_id,
            output_bucket=output_bucket,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            description=description,
        )
        self._templates[template_id] = template
        return template

    def get(self, template_id: str) -> Template:
        """The template with this id; raises :class:`TemplateNotFoundError` naming the
        known ids."""
        try:
            return self._templates[template_id]
        except (KeyError, TypeError):
            raise TemplateNotFoundError(str(template_id), self._templates) from None

    @property
    def ids(self) -> tuple[str, ...]:
        """The registered template ids, in registration order."""
        return tuple(self._templates)

    def __contains__(self, template_id: object) -> bool:
        return template_id in self._templates

    def __iter__(self) -> Iterator[Template]:
        return iter(tuple(self._templates.values()))

    def __len__(self) -> int:
        return len(self._templates)
