"""Reading saved weights without torch: :func:`load_state_dict`."""

from .state_dict_files import load_state_dict

__all__ = ["load_state_dict"]
