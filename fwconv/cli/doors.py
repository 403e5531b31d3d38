"""Click options generated from the option declarations (fwconv.options): one decorator per
door, so a command's flags, their defaults and help text are never written here."""

from __future__ import annotations

import click

from fwconv.options import NUMBER, CommandOptions, Options, accepted_types, door_of, fields


def _click_type(field, door):
    if door.choices:
        return click.Choice(door.choices)
    if door.path:
        return click.Path(dir_okay=False) if door.path == "file" else click.Path()
    types = accepted_types(field)
    if types == NUMBER:
        return click.FloatRange(min=door.minimum, min_open=True) if door.minimum is not None else float
    return int if types == (int,) else str


def click_option(field):
    """The click.option for one declared field: `--name` (or its declared flag), the field's
    default and help; a default-True switch is its `--no-...` flag; a repeatable word repeats."""
    door = door_of(field)
    flag = door.flag or "--" + field.name.replace("_", "-")
    decls = [d for d in (door.short, flag) if d] + [field.name]
    kw = {"help": door.help, "required": door.required}
    if door.metavar:
        kw["metavar"] = door.metavar
    if "/" in flag:
        kw["default"] = field.default
    elif isinstance(field.default, bool):
        kw.update(is_flag=True, default=field.default, flag_value=not field.default)
    elif door.repeat:
        kw["multiple"] = True
    else:
        kw.update(type=_click_type(field, door), default=field.default, show_default=field.default is not None)
    return click.option(*decls, **kw)


def options_for(door: str):
    """Every declared option that opens on `door`, as Click decorators, in declaration order."""
    chosen = [f for cls in (Options, CommandOptions) for f in fields(cls) if door in door_of(f).doors]

    def decorate(fn):
        for field in reversed(chosen):
            fn = click_option(field)(fn)
        return fn

    return decorate
