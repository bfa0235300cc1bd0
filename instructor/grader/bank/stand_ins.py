"""Stand-ins for a student's own functions, so that a test of one answer does not also test the answers it calls."""


def call_with_stand_ins(module, name: str, stand_ins: dict, *args, **kwargs):
    """`module.name(*args, **kwargs)` with `stand_ins` (name -> function) in place of those functions of the module,
    which is left as it was. Sent into the sandbox with the probes that use it: plain Python only."""
    missing = object()
    saved = {key: getattr(module, key, missing) for key in stand_ins}
    for key, stand_in in stand_ins.items():
        setattr(module, key, stand_in)
    try:
        return getattr(module, name)(*args, **kwargs)
    finally:
        for key, value in saved.items():
            if value is missing:
                delattr(module, key)
            else:
                setattr(module, key, value)
