"""The README's demo, runnable from a checkout: ``python examples/demo.py [--out DIR] [--epochs N]``.

The same as ``keras-policy demo``; the code lives in :mod:`policy.demo`.
"""

from policy.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
