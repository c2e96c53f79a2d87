"""Entry point of ``python -m autograder``."""

import sys

# jsonschema (imported by nbformat) builds an IRI grammar with lark at import
# when the optional rfc3987-syntax package is installed: 2.5 s for a format
# check no notebook uses. Without it, jsonschema skips that one check.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from autograder.cli import main  # noqa: E402

sys.exit(main())
