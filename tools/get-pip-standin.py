"""Stand-in for pip's get-pip.py, which ansible-test downloads to bootstrap pip in the virtual
environments of its sanity tests. Its download host is not reachable from these machines, so
`make sanity` puts this file in the cache of ansible-test's private home (SANITY_HOME) instead:
it bootstraps pip from Python's own ensurepip, then installs what ansible-test asked for (a
pinned pip) from the package index.
"""

import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"], stdout=subprocess.DEVNULL)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", "--upgrade", *args])
