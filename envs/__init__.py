"""Pure-JAX and MJX meta-RL environments. ``envs.make(name, **overrides)`` builds one."""
from envs.core import (Env, EnvState, check_options, make, option_names, options,  # noqa: F401
                       register, registered_names, resolve_options)

# Importing a task module registers it.
from envs import point_robot  # noqa: F401,E402
from envs import escape_room  # noqa: F401,E402
from envs import rooms  # noqa: F401,E402
from envs.meta import MetaEpisode, MetaState, make_meta, random_action  # noqa: F401,E402

try:  # MJX tasks need the optional `mujoco`/`mujoco-mjx` packages.
    from envs import mjx_tasks  # noqa: F401
except ImportError as _err:  # pragma: no cover - depends on the install
    MJX_IMPORT_ERROR = _err
else:
    MJX_IMPORT_ERROR = None
