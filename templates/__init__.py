"""The built-in templates (email/, feed/, web/): a package only so that importlib.resources
finds them in a wheel and in an editable checkout alike. Override one by copying it into
the folder named by ``paths.templates``."""
