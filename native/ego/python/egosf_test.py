# SPDX-License-Identifier: GPL-2.0-or-later
"""libegosf from Python (ctypes) against the EGO STAND-IN (not Platform EGO).
Run by tests/ego_python_test.ts, which builds libegosf against the stand-in and
passes EGOSF_LIB, EGOSF_CONFDIR, EGOSF_USER, EGOSF_PASSWORD."""
import os
import time
import unittest

from egosf import EgoSession, EgoSfError, Event


class EgosfTest(unittest.TestCase):
    def setUp(self):
        self.lib = os.environ["EGOSF_LIB"]
        self.conf = os.environ["EGOSF_CONFDIR"]
        self.user = os.environ["EGOSF_USER"]
        self.password = os.environ["EGOSF_PASSWORD"]

    def test_request_poll_reclaim_release(self):
        with EgoSession(self.lib, self.conf, self.user, self.password, "pytest") as ego:
            alloc = ego.request("/SnowFlock", "ComputeHosts", 10)
            self.assertIsNone(ego.poll(0), "slots arrive asynchronously")
            events = []
            while (event := ego.poll(200)) is not None:
                events.append(event)
            self.assertEqual(events, [Event("add", alloc, "h1", 2), Event("add", alloc, "h2", 1)])
            with open(os.path.join(self.conf, "reclaim"), "w") as f:
                f.write("h2\n")
            time.sleep(0.01)
            self.assertEqual(ego.poll(200), Event("reclaim", alloc, "h2", 1))
            ego.release_host(alloc, "h2")
            ego.release(alloc)
            with self.assertRaisesRegex(EgoSfError, "Unknown allocation"):
                ego.release(alloc)

    def test_bad_password(self):
        with self.assertRaisesRegex(EgoSfError, r"Cannot log on to EGO: .*\(egoerrno 4\)"):
            EgoSession(self.lib, self.conf, self.user, "wrong")


if __name__ == "__main__":
    unittest.main()
