import pytest

from kvcalc.catalog import load_gpu, load_model


@pytest.fixture
def model():
    return load_model


@pytest.fixture
def gpu():
    return load_gpu
