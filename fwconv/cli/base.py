"""The `fwconv` group, its global options and the error handling every command shares: typed
errors become one line and their exit code (fwconv.errors.EXIT_CODES); tracebacks only with
--debug. Imports no framework, so --help and usage errors are instant."""

from __future__ import annotations

import functools
import sys
import traceback

import click

from fwconv.cli.doors import options_for
from fwconv.errors import EXIT_CODES, FwconvError, StageTimeout
from fwconv.options import GLOBAL

DEBUG = {"on": False}


def fail(message: str, code: int) -> None:
    click.echo(f"fwconv: error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn):
    """Map typed errors to one line and their exit code; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from fwconv import signals

        try:
            result = fn(*args, **kwargs)
        except FwconvError as exc:
            if DEBUG["on"]:
                traceback.print_exc()
            _fail_if_interrupted()  # a step that failed because the signal cut it short
            report = getattr(exc, "report", None)
            if report is not None:
                from fwconv.validators.report import to_text

                click.echo(to_text(report))
            fail(exc.one_line(), exc.exit_code)
        except (signals.Interrupted, StageTimeout) as exc:
            fail(exc.one_line(), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:  # a bug or an unexpected library failure: still one line
            if DEBUG["on"]:
                traceback.print_exc()
            # a signal during an extension module's import surfaces as ImportError("initialization
            # failed"), not KeyboardInterrupt: after a signal, the run ends as interrupted
            _fail_if_interrupted()
            fail(f"unexpected {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''} "
                 "(run with --debug for the traceback)", 1)
        interrupted = signals.received()  # a library swallowed the signal: the run still failed
        if interrupted is not None:
            fail(interrupted.one_line(), interrupted.exit_code)
        return result

    return wrapper


def _fail_if_interrupted() -> None:
    from fwconv import signals

    interrupted = signals.received()
    if interrupted is not None:
        fail(interrupted.one_line(), interrupted.exit_code)


MAIN_HELP = ("Convert models between PyTorch, ONNX, TensorFlow and TFLite, and prove the result.\n\n\b\nExit codes:\n"
             + "\n".join(f"  {code:>3} {meaning}" for code, meaning in EXIT_CODES.items()))


class OneLineErrors(click.Group):
    """Click's usage errors (unknown option, bad value) as one `fwconv: error:` line, exit 2,
    like every other error: no usage banner, no 'Try --help' line."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.NoArgsIsHelpError as exc:  # bare `fwconv`: the help, as --help gives it
            click.echo(exc.format_message())
            sys.exit(0)
        except click.ClickException as exc:
            fail(exc.format_message().replace("\n", " "), exc.exit_code)
        except click.exceptions.Abort:
            fail("interrupted", 130)
        if isinstance(code, int) and code:
            sys.exit(code)
        return code


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             help=MAIN_HELP)
@click.version_option(package_name="fwconv")
@options_for(GLOBAL)
def main(debug: bool, max_size: str | None, progress: bool | None) -> None:
    """Global options (see MAIN_HELP for the help text)."""
    import os

    from fwconv import progress as shown, signals, timeouts

    signals.install()
    timeouts.enable_hard_stop()  # a command-line process may end itself when a stage never returns
    shown.configure(progress, live=not debug)
    DEBUG["on"] = debug
    if not debug:  # one line per error: TensorFlow's C++ log and library warnings only with --debug
        import warnings

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        warnings.filterwarnings("ignore")
    if max_size is not None:
        from fwconv.limits import ENV, parse_size

        try:
            parse_size(max_size)
        except FwconvError as exc:
            fail(exc.one_line(), exc.exit_code)
        os.environ[ENV] = max_size  # isolated runners and gate workers inherit it
    if debug:
        from fwconv import quiet

        quiet.DEBUG["on"] = True
