"""Stand-in for the get-pip.py bootstrap script ansible-test downloads from
ci-files.testing.ansible.com, which is out of reach here (PyPI is not).

ansible-test creates each sanity virtual environment without pip and runs this script in
it with pip's install options and the packages it wants (pip==<its pinned version>).
It installs the pip bundled with Python (ensurepip), then those packages from PyPI.
`make sanity` copies it to ~/.ansible/test/cache/get_pip_<version>.py when none is there.
"""

import subprocess
import sys

# Options only get-pip.py understands; pip install would refuse them.
GET_PIP_OPTIONS = {"--no-setuptools", "--no-wheel"}


def main():
    # In a process of its own: ensurepip points PIP_CONFIG_FILE at /dev/null in its process,
    # and pip must then read the machine's configuration (index, certificates).
    subprocess.check_call([sys.executable, "-m", "ensurepip"])
    arguments = [argument for argument in sys.argv[1:] if argument not in GET_PIP_OPTIONS]
    subprocess.check_call([sys.executable, "-m", "pip", "install", *arguments])


if __name__ == "__main__":
    main()
