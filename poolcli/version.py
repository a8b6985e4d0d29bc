"""The version of poolcli, in one place: the package, ``--version``, the man page and the OME-XML
``Creator`` read it here (a ground-floor module, so that nothing below the package's face has to
import the face for it).

May import: nothing.
"""

__version__ = "0.1.0"
