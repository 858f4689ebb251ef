"""crm-ltv: churn probability, future customer value and next-best-action.

The repository keeps its folders at the top (features/, training/, serving/, experiments/,
configs/); they install under this one root, so that no folder named `features` or `training`
in a user's working directory, nor another distribution of that name, can shadow them.
"""

from importlib.metadata import version

__version__ = version("crm-ltv")  # one source: pyproject.toml
