from tests.support.firestore import firestore_emulator  # noqa: F401
