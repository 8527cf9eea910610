from tests.support.genserver import gen_server, generator, instant_gen_server  # noqa: F401
from tests.support.s3server import media_storage, s3_server  # noqa: F401
