# The release version. setup.py reads it (and appends a local tag such as
# "+cpu" or "+cu130" when WEIGHTCAST_LOCAL_VERSION is set); keep it plain.
__version__ = "0.1.0"
