"""The ground floor: errors, typed configuration, the clock, the named states. Imports nothing else of ours."""
