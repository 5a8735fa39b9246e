"""The faces: magics, the Python API, the terminal command and their rendering.

Each turns what the user said into calls of the core and renders what it returns; none knows boto3.
"""
