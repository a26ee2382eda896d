"""Simulate a state-wide linked grade-5 -> grade-8 assessment panel (three cohorts), one row per student.

Columns: student, school, cohort (2015, 2018, 2019), pandemic (0/1), ses (school socio-cultural capital, z),
nongerman (school share of non-German-speaking students), lost_days (school days lost; 0 before the pandemic),
score5, score8. Truth: gain 1.0 SD, pandemic gain loss -0.10 SD, moderators of the loss given by DDD_* below.
"""

import sys
import numpy as np

DDD_SES, DDD_NONGERMAN, DDD_LOST = 0.0, 0.0, 0.0


def simulate(n_schools: int, per_school: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    ses = rng.normal(size=n_schools)
    nongerman = np.clip(rng.beta(2, 6, n_schools) - 0.05 * ses, 0, 1)
    lost = np.clip(rng.normal(60, 15, n_schools), 10, 120)
    u_school = rng.normal(0, 0.55, n_schools) + 0.3 * ses
    g_school = rng.normal(0, 0.06, n_schools)
    rows = []
    sid = 0
    for cohort, pandemic in ((2015, 0), (2018, 1), (2019, 1)):
        u_sc = rng.normal(0, 0.12, n_schools)
        g_sc = rng.normal(0, 0.08, n_schools)
        n = rng.poisson(per_school, n_schools)
        school = np.repeat(np.arange(n_schools), n)
        m = school.size
        student = np.arange(sid, sid + m)
        sid += m
        ability = rng.normal(0, 0.75, m)
        ld = lost[school] * pandemic
        s5 = u_school[school] + u_sc[school] + ability + rng.normal(0, 0.45, m)
        gain = (
            1.0
            + g_school[school]
            + g_sc[school]
            + pandemic * (-0.10 + DDD_SES * ses[school] + DDD_NONGERMAN * nongerman[school])
            + DDD_LOST * (ld - 60) / 15 * pandemic
            + 0.1 * ability
        )
        s8 = s5 - rng.normal(0, 0.45, m) + rng.normal(0, 0.45, m) + gain + rng.normal(0, 0.3, m)
        rows.append(
            np.column_stack(
                [student, school, np.full(m, cohort), np.full(m, pandemic), ses[school], nongerman[school], ld, s5, s8]
            )
        )
    return np.vstack(rows)


if __name__ == "__main__":
    data = simulate(int(sys.argv[1]), int(sys.argv[2]))
    header = "student,school,cohort,pandemic,ses,nongerman,lost_days,score5,score8"
    np.savetxt(
        sys.argv[3],
        data,
        delimiter=",",
        header=header,
        comments="",
        fmt=["%d", "%d", "%d", "%d", "%.5f", "%.5f", "%.2f", "%.5f", "%.5f"],
    )
