"""``python -m signer ...`` is the ``signer`` command."""

from signer.cli import main

raise SystemExit(main())
