"""crm-ltv: churn probability, future customer value and next-best-action.

The repository keeps its folders at the top (features/, training/, serving/, experiments/,
configs/); they install under this one root, so that no folder named `features` or `training`
in a user's working directory, nor another distribution of that name, can shadow them.
"""

__version__ = "0.2.0"
