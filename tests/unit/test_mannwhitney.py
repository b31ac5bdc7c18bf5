"""The mannWhitney judge: Kayenta's own published cases, then properties.

Kayenta cases are ported from spinnaker/kayenta at commit
a69573be9d8fededacf80817e4151a2c8df41276 (committed 2025-04-08), files:

- CLASSIFIER = kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ClassifierSuite.scala
- SCORER = kayenta-judge/src/test/scala/com/netflix/kayenta/judge/ScorerSuite.scala
- MW = kayenta-mannwhitney/src/test/scala/com/netflix/kayenta/mannwhitney/MannWhitneySuite.scala

Each case's pytest id is the Scala test's name. Kayenta's "experiment" is our canary, its
"control" our stable; ``MannWhitneyClassifier(tolerance, confLevel, effectSizeThresholds =
(allowedDecrease, allowedIncrease), criticalThresholds = (criticalDecrease, criticalIncrease))``.
The data below is theirs, digit for digit up to Python's shortest repr of the same double.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from scipy import optimize, stats  # type: ignore[import-untyped]

from kanary.analysis.mannwhitney import (
    MetricClassification,
    Score,
    classify,
    location_shift,
    score,
    verdict,
)

# fmt: off
# --- Kayenta's data (CLASSIFIER and MW), named by role.
STABLE_10 = [
    11.1453586774086, 9.961805988559702, 7.068574306369829, 7.301266181048366, 9.794463026565673,
    9.60379186036873, 6.186779335033939, 12.345599159550174, 10.371891733859533, 8.609430078501672,
    9.913162673361084, 10.361375299003466, 14.206800387518818, 10.9461537547533,
    10.215876627044048, 11.739760899484603, 10.907627468626439, 12.823353694464775,
    8.101860977173214, 8.498161640880493, 12.113441374697231, 13.272210809932028,
    10.114579381663297, 6.946395876797807, 6.210527854172778, 10.160401684903775,
    8.345771206645546, 8.383822063895833, 7.0020205070083765, 10.755757401808442,
]
CANARY_10 = [
    9.776734312010946, 10.587071850477695, 7.837550638890177, 9.324332688611388, 8.377450540978442,
    8.935926439960628, 8.270766332472851, 9.748430812671693, 11.623746715547156, 9.275344267963394,
    8.153804774917152, 10.562020975754294, 13.498135575451835, 11.054419256110332,
    6.953890359005509, 12.52100834219548, 9.021635860354644, 4.923485669953166, 11.251360203607172,
    11.598449508040337, 8.435232204668182, 11.110228516867279, 10.70063380164755,
    8.921277365211525, 10.086167067942661, 11.42107515483087, 9.379234781364495, 7.798032014855259,
    10.62339807275746, 11.909642062063739,
]
CANARY_20 = [
    20.878412601720026, 21.78550581191622, 19.70828084717019, 15.859946903461562,
    19.51005877217684, 19.392005525270303, 22.9265283149121, 17.156530276709894, 18.65511791622617,
    23.422607911610392, 24.055817684156644, 22.62689958516501, 21.979472967817678,
    21.659318607218694, 20.067707574072426, 22.119570836305414, 16.44037132663307,
    21.55962282634127, 21.00018144348922, 17.779369411412663, 17.806006358943584,
    18.53720061838611, 20.555550300210797, 19.552928184468378, 21.771118944087092,
    21.809622806176627, 20.96176290990527, 20.97757157750302, 19.106303205498794,
    16.97691896698708,
]
STABLE_20 = [
    20.758113589510348, 22.80205962946456, 20.61234036349221, 20.973274654749986,
    23.469237330498622, 21.53133988954805, 21.767353687439805, 18.3080507303743,
    19.062145167827566, 25.87949843600178, 18.98262972633613, 19.387920182269266,
    18.995398251246982, 24.228420230932805, 20.050985172694688, 18.2340451091756,
    17.870515494460435, 23.05810386380662, 18.400259567501134, 16.971352091177167,
    19.46752906605215, 17.90465423342031, 17.55394861782583, 16.104611843907193, 24.38171081433039,
    15.919294339922635, 20.479409626304697, 19.08307201492406, 17.455788050722866,
    18.853826823235142,
]
ERRORS_CANARY = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.6666666666666572, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    3.703703703703681, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5625000000000142, 0.0, 0.0, 0.0, 0.0,
    3.333333333333343, 0.0, 1.7543859649122737, 0.0, 1.8518518518518476, 0.0, 0.0,
    1.8518518518518476, 0.0, 0.0, 1.5151515151515156, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    1.7857142857142776, 1.3333333333333286, 0.0, 3.125000000000014, 1.9607843137255117,
    1.4492753623188293, 2.439024390243887, 1.6393442622950687, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    1.6129032258064484, 1.9607843137255117, 1.5873015873015817, 0.0, 0.0, 2.8169014084507182, 0.0,
    0.0, 3.0303030303030454, 0.0, 0.0, 3.3898305084745743, 0.0, 0.0, 1.234567901234584, 0.0, 0.0,
    0.0, 0.0, 1.7241379310344769, 0.0, 0.0, 0.0, 0.0, 1.6949152542372872, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 1.470588235294116, 0.0, 0.0, 1.3698630136986196, 3.225806451612911,
    1.754385964912288, 3.4482758620689538, 0.0, 3.333333333333343, 0.0, 0.0, 0.0,
    1.818181818181813, 0.0, 0.0, 1.4285714285714448, 0.0, 0.0, 1.8867924528301927,
    2.0000000000000284, 0.0, 0.0, 0.0, 2.985074626865682, 0.0, 0.0, 1.6666666666666714, 0.0, 0.0,
    1.5625, 1.9230769230769198, 0.0, 1.8518518518518619, 0.0, 2.702702702702709, 0.0, 0.0, 0.0,
    1.3513513513513544, 0.0, 1.818181818181813, 0.0, 1.6666666666666572, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 1.818181818181813, 0.0, 1.4285714285714164, 0.0, 0.0, 4.1095890410959015, 0.0, 0.0,
    0.0, 1.8518518518518619, 0.0, 0.0, 1.8518518518518476, 1.3888888888888857, 0.0, 0.0, 0.0, 0.0,
    1.8867924528301785, 1.4285714285714164, 0.0, 0.0, 1.5625, 1.8867924528301927, 0.0, 0.0, 0.0,
    0.0, 2.040816326530603, 1.818181818181813, 0.0, 0.0, 1.6393442622950687, 0.0,
    1.7241379310344769, 1.5151515151515156, 2.564102564102555, 0.0, 0.0, 0.0, 0.0,
    5.555555555555557, 0.0, 0.0, 4.081632653061206, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    3.5714285714285836, 0.0, 2.040816326530603, 3.1746031746031633, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0,
]
ERRORS_STABLE = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5625000000000142, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0, 1.3888888888888857, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5384615384615614, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.492537313432834, 0.0,
    0.0, 0.0, 1.6949152542373014, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    1.470588235294116, 0.0, 0.0, 0.0, 0.0, 1.754385964912288, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    1.8518518518518619, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 1.6393442622950687, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.7241379310344769, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5873015873015817, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.492537313432834, 0.0,
    0.0, 0.0, 3.124999999999986, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.492537313432834,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 2.9850746268656536, 0.0, 2.5000000000000284, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.7857142857142776, 0.0, 0.0, 0.0,
]
CLES_PASS_CANARY = [
    0.0, 0.0, 0.000146580998, 0.0, 0.0, 0.0, 7.94701987e-05, 0.0, 0.0, 0.0, 2.68889486e-05, 0.0,
    0.0, 2.64935753e-05, 0.0, 0.0, 0.0, 2.61608895e-05, 0.000127824931, 0.0, 0.0, 0.0,
    2.54511211e-05, 2.58665287e-05, 7.63339355e-05, 0.0, 2.54239443e-05, 0.0, 0.0, 0.0,
    2.61001201e-05, 5.2010194e-05, 0.0, 2.64452319e-05, 5.2755137e-05, 7.83719533e-05,
    5.19467027e-05, 2.58344528e-05, 2.58899676e-05, 0.0, 2.59497613e-05, 2.57938043e-05,
    7.78553448e-05, 2.6059311e-05, 2.61001201e-05, 0.0, 0.0, 2.59349551e-05, 2.6055916e-05, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 2.58819267e-05, 0.0, 2.58825965e-05, 2.57572635e-05, 2.56877906e-05,
]
CLES_PASS_STABLE = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.91528191e-05, 0.0, 0.0, 0.0, 2.98284862e-05,
    5.99916012e-05, 0.0, 5.92276712e-05, 0.0, 2.98053709e-05, 0.0, 2.9730935e-05, 5.9215396e-05,
    0.0, 0.0, 0.0, 2.92800047e-05, 0.0, 2.9455081e-05, 0.0, 0.0, 0.0, 5.83958656e-05, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.88600289e-05, 2.90334756e-05, 2.91740817e-05, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 2.92765758e-05, 0.0, 0.0, 0.0, 0.0, 0.0, 2.94637596e-05, 5.89136326e-05,
    0.0, 0.0, 0.0,
]
CLES_HIGH_CANARY = [
    0.00689808, 0.00568664, 0.00680876, 0.00642045, 0.00561825, 0.00472294, 0.00398378, 0.00392403,
    0.00421201, 0.0047529, 0.00460853, 0.00439888, 0.00561875, 0.01998866, 0.0124369, 0.00624391,
    0.00444361, 0.00442059, 0.00372095, 0.00540736, 0.00715402, 0.00425974, 0.00414409, 0.01172436,
    0.0125959, 0.00371891, 0.00429855, 0.00369876, 0.00325709, 0.00415943, 0.00371754, 0.00445212,
    0.00521721, 0.00443938, 0.00380859, 0.01602997, 0.00788885, 0.0038155, 0.00326921, 0.00336928,
    0.00365917, 0.00333869, 0.00427639, 0.00355911, 0.00381224, 0.00360057, 0.00349305, 0.00401164,
    0.00351947, 0.00356299, 0.003407, 0.00414397, 0.00393346, 0.00413318, 0.00359041, 0.00366314,
    0.00309383, 0.00383733, 0.00363324, 0.00280674,
]
CLES_HIGH_STABLE = [
    0.00081956, 0.00239282, 0.00133685, 0.00094917, 0.00029518, 0.00035344, 0.00048194, 0.00034893,
    0.0003202, 0.00079814, 0.00090881, 0.00072599, 0.00037819, 0.00038286, 0.00057604, 0.00064821,
    0.00032194, 0.0002245, 0.00025202, 0.00071997, 0.00022721, 0.00042578, 0.00042496, 0.00045613,
    0.00037072, 0.0003317, 0.00032889, 0.00032749, 0.00036093, 0.00029285, 0.00038401, 0.00044467,
    0.00071086, 0.00036692, 0.00052079, 0.00074974, 0.00128791, 0.00062046, 0.00086345, 0.00118563,
    0.00103379, 0.00028913, 0.00057628, 0.00057943, 0.00048735, 0.00029409, 0.0002005, 0.00016612,
    0.00089312, 0.00059367, 0.00061706, 0.00163313, 0.00097784, 0.00029305, 0.00058839, 0.00085212,
    0.00048298, 0.00035546, 0.00025866, 0.00038767,
]
CLES_LOW_CANARY = [
    24.24693907, 26.13330099, 22.50056744, 24.36646841, 23.19935673, 19.43801304, 20.99654102,
    18.90793651, 21.31949881, 21.83528381, 21.64211206, 23.13365968, 21.09163134, 19.45540615,
    20.74783158, 22.25527831, 19.82051791, 20.9865487, 19.94450026, 23.2904056, 18.18408424,
    22.13843542, 19.42896044, 19.84140464, 23.91557662, 21.00981557, 21.8594633, 23.11630163,
    22.95700392, 17.80045135,
]
CLES_LOW_STABLE = [
    25.09626848, 26.15032198, 24.88431438, 24.18870163, 22.14684987, 28.01743443, 21.29910501,
    27.24688773, 28.64187535, 27.03504445, 24.67888311, 22.35137878, 27.41640397, 26.00225548,
    23.02118534, 25.99647292, 22.77446912, 25.56704719, 25.57025827, 21.2721602, 23.12987357,
    24.59111604, 27.48865016, 27.21967755, 23.5951111, 22.5429607, 25.83015564, 23.31965305,
    24.3911644, 25.11468194,
]
R_TIE_CANARY = [
    2.5, 2.5, 2.0, 2.5, 3.5, 2.0, 3.5, 1.5, 3.0, 3.0, 2.5, 3.5, 2.0, 2.5, 2.0, 2.0, 5.0, 3.0, 2.0,
    1.5, 2.0, 4.0, 3.0, 2.5, 3.0, 2.0, 2.0, 2.0, 2.5, 3.5, 1.5, 1.5, 3.5, 2.0, 2.5, 2.5, 3.0, 3.5,
    2.5, 6.5, 2.5, 4.0, 2.5, 3.0, 2.5, 6.5, 2.5, 3.0, 1.5, 2.0, 2.5, 3.0, 7.5, 1.5, 2.0, 4.0, 2.5,
    2.0, 2.5, 3.5, 4.0, 2.5, 3.0, 2.5, 2.0, 3.5, 3.0, 16.5, 3.0, 3.0, 7.0, 4.5, 5.0, 2.0, 3.5, 6.0,
    1.5, 3.0, 2.5, 4.0, 3.0, 1.5, 5.0, 3.0, 2.5, 5.5, 3.0, 1.5, 2.5, 6.0,
]
R_TIE_STABLE = [
    1.5, 6.0, 5.0, 2.5, 2.5, 2.0, 2.0, 3.5, 3.0, 3.0, 3.0, 2.0, 3.0, 8.0, 4.0, 2.5, 3.0, 2.5, 2.5,
    2.0, 2.5, 2.0, 2.0, 2.5, 3.5, 3.0, 1.5, 5.0, 2.5, 5.5, 2.0, 2.5, 3.5, 2.0, 2.5, 4.0, 2.0, 2.0,
    2.0, 2.0, 5.5, 4.5, 4.0, 3.0, 3.0, 3.5, 2.5, 3.0, 2.5, 4.0, 6.0, 2.0, 5.0, 6.0, 3.5, 3.0, 54.5,
    3.0, 5.0, 6.0, 3.5, 4.5, 2.5, 2.0, 6.0, 5.0, 2.5, 3.5, 2.0, 3.0, 2.5, 3.5, 3.5, 2.5, 3.0, 4.5,
    3.0, 15.5, 5.0, 2.5, 3.0, 4.0, 3.5, 4.0, 4.0, 2.0, 4.5, 2.5, 4.0, 3.0,
]
R_TIE_LARGE_CANARY = [
    1.5, 2.0, 5.0, 1.5, 1.5, 8.5, 1.0, 1.0, 2.0, 1.0, 1.5, 0.5, 2.0, 1.5, 2.0, 1.5, 1.0, 2.5, 1.5,
    1.5, 2.0, 1.5, 1.5, 1.5, 2.0, 2.0, 1.0, 5.5, 1.5, 2.0, 1.5, 1.5, 1.0, 2.5, 1.0, 2.0, 1.5, 1.5,
    2.0, 2.0, 1.5, 1.5, 1.0, 1.0, 2.0, 0.5, 1.5, 0.5, 3.5, 1.5, 3.0, 19.0, 0.5, 1.5, 0.5, 1.5, 2.0,
    1.5, 1.5, 1.5, 1.5, 2.0, 1.5, 2.0, 2.0, 1.5, 1.0, 1.5, 1.0, 2.0, 1.0, 2.0, 1.5, 1.5, 3.0, 2.0,
    1.5, 1.5, 0.5, 2.0, 1.5, 1.0, 2.0, 1.0, 1.0, 2.0, 1.0, 2.0, 1.5, 1.0, 1.0, 2.0, 1.5, 1.5, 1.5,
    0.5, 1.5, 1.5, 0.5, 1.0, 1.5, 1.5, 1.5, 1.0, 2.0, 2.0, 2.0, 1.5, 1.0, 1.5, 1.0, 1.0, 1.5, 3.5,
    2.0, 1.5, 1.0, 2.0, 1.5, 5.5, 0.5, 2.0, 3.5, 1.5, 1.0, 2.0, 0.5, 2.5, 1.0, 1.5, 0.5, 2.0, 2.0,
    1.0, 0.5, 1.5, 1.0, 1.5, 0.5, 0.5, 1.0, 1.5, 1.0, 1.5, 0.5, 1.5, 1.0, 1.0, 0.5, 1.0, 0.5, 4.0,
    1.0, 1.5, 2.0, 5.5, 1.5, 0.5, 2.0, 1.0, 1.5, 1.0, 1.5, 1.5, 1.0, 1.5, 1.5, 1.5, 1.5, 1.5, 1.5,
    2.0, 0.5, 1.5, 1.0, 2.0, 1.0, 1.0, 0.5, 1.0,
]
R_TIE_LARGE_STABLE = [
    1.5, 1.5, 1.0, 2.0, 1.5, 1.5, 1.5, 2.0, 1.0, 1.0, 2.0, 1.5, 1.5, 1.0, 1.5, 1.5, 1.5, 1.5, 1.5,
    2.0, 1.0, 1.5, 3.0, 2.0, 1.0, 1.5, 1.5, 1.5, 2.0, 1.5, 1.0, 1.0, 1.5, 2.5, 2.0, 0.0, 1.0, 2.0,
    2.0, 1.5, 3.0, 2.0, 1.0, 2.5, 0.5, 1.5, 0.5, 2.5, 2.0, 1.5, 1.5, 2.0, 1.0, 4.5, 2.5, 0.5, 2.5,
    1.5, 1.5, 1.0, 2.0, 1.0, 2.5, 1.5, 2.0, 1.5, 3.0, 1.5, 1.5, 1.5, 1.5, 2.0, 1.0, 2.5, 1.0, 1.5,
    2.5, 1.5, 2.5, 2.0, 1.5, 1.5, 1.5, 2.5, 1.0, 7.5, 1.5, 3.0, 5.5, 1.0, 1.5, 2.0, 1.0, 1.5, 2.5,
    2.5, 1.0, 1.0, 2.5, 1.5, 1.5, 3.0, 4.0, 1.0, 1.5, 2.0, 1.5, 1.5, 1.5, 2.5, 1.5, 3.5, 2.5, 1.5,
    2.0, 1.0, 4.0, 1.5, 1.0, 1.5, 2.5, 2.5, 2.0, 2.5, 1.5, 1.5, 2.0, 1.0, 1.5, 2.0, 1.5, 1.0, 2.5,
    1.5, 1.5, 2.0, 2.0, 1.0, 1.5, 2.5, 0.5, 2.0, 2.5, 2.0, 1.0, 2.0, 0.5, 1.5, 1.0, 2.5, 1.0, 1.5,
    1.0, 7.0, 1.0, 3.5, 1.5, 2.0, 1.5, 1.5, 2.0, 3.0, 1.5, 1.5, 2.0, 1.5, 2.0, 1.5, 4.0, 2.0, 1.5,
    1.5, 1.5, 1.5, 1.5, 0.5, 2.0, 1.0, 1.5, 0.5,
]


# --- CLASSIFIER: every MannWhitneyClassifier test (the file's MeanInequalityClassifier tests
# are another classifier, not ported). (canary, stable, kwargs, classification, critical);
# critical None where the Scala test does not assert it.
HIGH_5 = [20.0, 22.0, 21.0, 25.0, 30.0]
LOW_5 = [1.0, 2.2, 1.1, 2.5, 3.0]
T10 = {"tolerance": 0.10, "confidence": 0.95}
T20 = {"tolerance": 0.20, "confidence": 0.98}
ZERO_MEAN_CANARY = [
    0.05000000074505806, 0.05000000074505806, 0.01666666753590107, 0.01666666753590107,
    0.01666666753590107, 0.05000000074505806, 0.03333333507180214, 0.05000000260770321,
    0.05000000260770321, 0.13333333656191826,
]
KAYENTA_CLASSIFIER_CASES = [
    pytest.param(CANARY_10, STABLE_10, T10, "Pass", None,
                 id="Mann-Whitney Classifier Test: Pass Metric"),
    pytest.param(CANARY_20, STABLE_10, T10, "High", None,
                 id="Mann-Whitney Classifier Test: High Metric"),
    pytest.param(CANARY_10, STABLE_20, T10, "Low", None,
                 id="Mann-Whitney Classifier Test: Low Metric"),
    pytest.param(CANARY_10, STABLE_20, {**T10, "direction": "increase"}, "Pass", None,
                 id="Mann-Whitney Classifier Directional Test: Increase"),
    pytest.param(CANARY_20, STABLE_10, {**T10, "direction": "decrease"}, "Pass", None,
                 id="Mann-Whitney Classifier Directional Test: Decrease"),
    pytest.param(CANARY_20, STABLE_10, {**T10, "direction": "increase"}, "High", False,
                 id="Mann-Whitney Classifier Directional Test: High Metric"),
    pytest.param(CANARY_10, STABLE_20, {**T10, "direction": "decrease"}, "Low", None,
                 id="Mann-Whitney Classifier Directional Test: Low Metric"),
    pytest.param(ERRORS_CANARY, ERRORS_STABLE, T10, "High", False,
                 id="Mann-Whitney Classifier Test: High Metric (Large Input)"),
    pytest.param(HIGH_5, LOW_5, {**T10, "allowed_decrease": 0.8, "allowed_increase": 1.2},
                 "High", None, id="Mann-Whitney Classifier Test - Mean Ratio Effect Size: High"),
    pytest.param(CANARY_10, STABLE_20,
                 {**T10, "allowed_decrease": 0.8, "allowed_increase": 1.2, "direction": "decrease"},
                 "Low", None, id="Mann-Whitney Classifier Test - Mean Ratio Effect Size: Low"),
    pytest.param([10.0, 12.2, 10.1, 12.5, 23.0], HIGH_5,
                 {**T10, "allowed_decrease": 0.5, "allowed_increase": 1.0,
                  "nan_strategy": "remove"},
                 "Pass", None, id="Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass"),
    pytest.param(ERRORS_CANARY, ERRORS_STABLE,
                 {**T10, "allowed_decrease": 1.0, "allowed_increase": 5.0}, "Pass", None,
                 id="Mann-Whitney Classifier Test - Mean Ratio Effect Size: Pass (Large Input)"),
    pytest.param(CLES_PASS_CANARY, CLES_PASS_STABLE,
                 {**T20, "allowed_decrease": 0.5, "allowed_increase": 0.8,
                  "effect_size_measure": "cles"},
                 "Pass", None, id="Mann-Whitney Classifier Test - CLES Effect Size: Pass"),
    pytest.param(CLES_HIGH_CANARY, CLES_HIGH_STABLE,
                 {**T20, "allowed_decrease": 0.2, "allowed_increase": 0.8,
                  "effect_size_measure": "cles"},
                 "High", None, id="Mann-Whitney Classifier Test - CLES Effect Size: High"),
    pytest.param(CLES_LOW_CANARY, CLES_LOW_STABLE,
                 {**T20, "allowed_decrease": 0.2, "allowed_increase": 0.8,
                  "effect_size_measure": "cles"},
                 "Low", None, id="Mann-Whitney Classifier Test - CLES Effect Size: Low"),
    pytest.param(HIGH_5, LOW_5,
                 {**T10, "critical_decrease": 1.0, "critical_increase": 1.2, "critical": True},
                 "High", True,
                 id="Mann-Whitney Classifier Test - Critical Effect Size: Critical High"),
    pytest.param([2.0, 2.0, 2.0, 2.0, 3.0], [10.0, 20.2, 10.1, 20.5, 30.0],
                 {**T10, "critical_decrease": 1.2, "critical_increase": 1.0, "critical": True},
                 "Low", True,
                 id="Mann-Whitney Classifier Test - Critical Effect Size: Critical Low"),
    pytest.param(HIGH_5, LOW_5,
                 {**T10, "allowed_decrease": 1.0, "allowed_increase": 5.0,
                  "critical_decrease": 1.0, "critical_increase": 13.0, "critical": True},
                 "High", False, id="Mann-Whitney Classifier Test - Critical Effect Size: High"),
    pytest.param(HIGH_5, LOW_5,
                 {**T10, "allowed_decrease": 1.0, "allowed_increase": 13.0,
                  "critical_decrease": 1.0, "critical_increase": 15.0, "critical": True},
                 "Pass", False, id="Mann-Whitney Classifier Test - Critical Effect Size: Pass"),
    pytest.param(HIGH_5, LOW_5, {**T10, "critical": True}, "High", True,
                 id="Mann-Whitney Classifier Test - Critical Effect Size: "
                    "Critical High (Default Thresholds)"),
    pytest.param([1.0, 1.0, 1.0], [1.0, 1.0], {**T10, "direction": "decrease"}, "Pass", None,
                 id="Mann-Whitney Tied Observations"),
    pytest.param([1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 4.0, 3.0, 2.0, 1.0],
                 {**T10, "direction": "decrease"}, "Pass", None,
                 id="Mann-Whitney Identical Populations"),
    pytest.param([0.0, 1.0, 1.0, 1.0, 1.0], [1.0] * 5, {**T10, "direction": "decrease"},
                 "Pass", None, id="Mann-Whitney Leading Zero Identical Population"),
    pytest.param([], [1.0, 2.0, 3.0, 4.0, 5.0], {**T10, "direction": "decrease"}, "Nodata", None,
                 id="Mann-Whitney Missing Experiment Data"),
    pytest.param([], [1.0, 2.0, 3.0, 4.0, 5.0], {**T10, "direction": "decrease", "critical": True},
                 "Nodata", True, id="Mann-Whitney Missing Experiment Data: Critical Metric"),
    pytest.param([], [1.0, 2.0, 3.0, 4.0, 5.0],
                 {**T10, "direction": "decrease", "nan_strategy": "replace"}, "Pass", None,
                 id="Mann-Whitney Missing Experiment Data with NaN Replacement"),
    pytest.param([1.0, 1.0, 1.0, 1.0, 10.0], [1.0] * 5, T10, "Pass", None,
                 id="Mann-Whitney Majority Tied Observations"),
    pytest.param([10.0] * 5, [1.0] * 5, T10, "High", None, id="Mann-Whitney Tied Ranks"),
    pytest.param([10.0] * 5, [0.0] * 5, T10, "High", None,
                 id="Mann-Whitney Tied Ranks With Zeros"),
    pytest.param([54.9, 54.5, 55.1, 55.6, 57.4], [0.0] * 5,
                 {**T10, "allowed_decrease": 0.8, "allowed_increase": 1.2}, "High", None,
                 id="Mann-Whitney Zero Mean: High Metric with Effect Size"),
    pytest.param([0.0] * 5, [54.9, 54.5, 55.1, 55.6, 57.4],
                 {**T10, "allowed_decrease": 0.8, "allowed_increase": 1.2}, "Low", None,
                 id="Mann-Whitney Zero Mean: Low Metric with Effect Size"),
    pytest.param(ZERO_MEAN_CANARY, [0.0] * 10,
                 {**T10, "critical_decrease": 0.8, "critical_increase": 1.2,
                  "nan_strategy": "replace", "critical": True},
                 "High", True, id="Mann-Whitney Zero Mean: Critical Metric"),
    pytest.param([0.0] * 5, [0.0] * 5,
                 {**T10, "allowed_decrease": 0.8, "allowed_increase": 1.2}, "Pass", None,
                 id="Mann-Whitney Zero Mean: Pass Metric"),
]
# fmt: on


@pytest.mark.parametrize(
    ("canary", "stable", "kwargs", "label", "critical"), KAYENTA_CLASSIFIER_CASES
)
def test_kayenta_classifier_cases(
    canary: list[float],
    stable: list[float],
    kwargs: dict[str, Any],
    label: str,
    critical: bool | None,
) -> None:
    result = classify(canary, stable, name="m", **kwargs)
    assert result.classification == label, result.reason
    if critical is not None:
        assert result.critical is critical
    assert result.reason  # CLASSIFIER "Mann-Whitney Missing Data: Reason String"


def test_kayenta_missing_data_reason_string() -> None:
    # CLASSIFIER "Mann-Whitney Missing Data: Reason String": both sides empty, critical.
    result = classify(
        [],
        [],
        name="test-critical-metric",
        critical=True,
        tolerance=0.10,
        confidence=0.95,
        direction="decrease",
    )
    assert result.classification == "Nodata"
    assert result.critical
    assert "test-critical-metric" in result.reason


def test_kayenta_zero_mean_deviation() -> None:
    # CLASSIFIER "Zero Mean: High/Low Metric with Effect Size" assert deviation.isNaN,
    # "Zero Mean: Pass Metric" asserts deviation == 1.0.
    kw: dict[str, Any] = {**T10, "allowed_decrease": 0.8, "allowed_increase": 1.2}
    assert math.isnan(classify([54.9, 54.5, 55.1, 55.6, 57.4], [0.0] * 5, **kw).deviation)
    assert math.isnan(classify([0.0] * 5, [54.9, 54.5, 55.1, 55.6, 57.4], **kw).deviation)
    assert classify([0.0] * 5, [0.0] * 5, **kw).deviation == 1.0


# --- MW: the interval and estimate. Kayenta (like R) root-finds to an absolute 1e-4
# (BrentSolver.TOLERANCE, R's uniroot tol); we take the exact order statistic, so published
# values are matched to that 1e-4. On these tied data the exact ends are the jump points.


def test_kayenta_mw_confidence_interval_and_estimate() -> None:
    # MW "Mann-Whitney Confidence Interval & Estimate": exact, E = 1e-6.
    lower, upper, estimate = location_shift(
        np.array([10.0, 20.0, 30.0, 40.0]), np.array([1.0, 2.0, 3.0, 4.0]), 0.95
    )
    assert (lower, upper, estimate) == pytest.approx((6.0, 39.0, 22.5), abs=1e-6)


@pytest.mark.parametrize(
    ("canary", "stable", "confidence", "expected"),
    [
        # MW "Tie out with R Version": R's wilcox.test values.
        pytest.param(
            R_TIE_CANARY,
            R_TIE_STABLE,
            0.95,
            (-0.500002521696696, -3.486287505871302e-05, -0.4999393907180323),
            id="Tie out with R Version",
        ),
        # MW "Tie out with R Version (Large)".
        pytest.param(
            R_TIE_LARGE_CANARY,
            R_TIE_LARGE_STABLE,
            0.98,
            (-0.4999173250549087, -6.912685789769486e-06, -3.45044082729315e-05),
            id="Tie out with R Version (Large)",
        ),
        # MW "Intermediate Values / Variables": rCil, rCiu, rEst (here lower > upper: the
        # exact interval is [0, 0], the 2e-5..3.5e-5 are the root finder's slop).
        pytest.param(
            ERRORS_CANARY,
            ERRORS_STABLE,
            0.95,
            (3.521755377702165e-05, 2.02456461662334e-05, 2.6279243045155653e-05),
            id="Intermediate Values / Variables",
        ),
    ],
)
def test_kayenta_mw_tie_out_with_r(
    canary: list[float],
    stable: list[float],
    confidence: float,
    expected: tuple[float, float, float],
) -> None:
    got = location_shift(np.array(canary), np.array(stable), confidence)
    assert got == pytest.approx(expected, abs=1e-4)


def test_kayenta_mw_zquant() -> None:
    # MW "Test zQuant": the quantile our interval uses.
    assert stats.norm.ppf(0.02 / 2) == pytest.approx(-2.326348, abs=1e-6)


# A port of Kayenta's MannWhitney.wilcoxonDiff (itself R's wdiff) and R's root(), used as
# the reference the order statistics and scipy's p-value are checked against.
def kayenta_wilcoxon_diff(mu: float, zq: float, x: np.ndarray, y: np.ndarray) -> float:
    n, m = x.size, y.size
    dr = stats.rankdata(np.concatenate([x - mu, y]))
    ties = np.unique(dr, return_counts=True)[1].astype(float)
    dz = dr[:n].sum() - n * (n + 1) / 2 - n * m / 2
    sigma = math.sqrt(n * m / 12 * ((n + m + 1) - np.sum(ties**3 - ties) / ((n + m) * (n + m - 1))))
    return float((dz - np.sign(dz) * 0.5) / sigma - zq)


def kayenta_interval(x: np.ndarray, y: np.ndarray, confidence: float) -> tuple[float, float]:
    mumin, mumax = float(x.min() - y.max()), float(x.max() - y.min())

    def root(zq: float) -> float:
        if kayenta_wilcoxon_diff(mumin, zq, x, y) <= 0:
            return mumin
        if kayenta_wilcoxon_diff(mumax, zq, x, y) >= 0:
            return mumax
        return float(
            optimize.brentq(kayenta_wilcoxon_diff, mumin, mumax, args=(zq, x, y), xtol=1e-13)
        )

    z = float(stats.norm.ppf((1 - confidence) / 2))
    return root(-z), root(z)


def test_kayenta_mw_intermediate_values_of_the_reference_port() -> None:
    # MW "Intermediate Values / Variables": the port above gives Kayenta's (and R's) values.
    x, y = np.array(ERRORS_CANARY), np.array(ERRORS_STABLE)
    mumin, mumax = x.min() - y.max(), x.max() - y.min()
    z = 1.9599639845400536
    assert kayenta_wilcoxon_diff(mumin, z, x, y) == pytest.approx(17.090968923762254, abs=1e-6)
    assert kayenta_wilcoxon_diff(mumax, z, x, y) == pytest.approx(-20.997687930433106, abs=1e-6)
    assert kayenta_wilcoxon_diff(mumin, -z, x, y) == pytest.approx(21.01089689284236, abs=1e-6)
    assert kayenta_wilcoxon_diff(mumax, -z, x, y) == pytest.approx(-17.077759961353, abs=1e-6)


def _samples(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    if kind == "normal":
        return rng.normal(10.0, 2.0, n)
    if kind == "rounded":  # ties within and across the samples
        return np.round(rng.normal(10.0, 2.0, n) * 2) / 2
    return np.where(rng.random(n) < 0.7, 0.0, rng.exponential(1.0, n))  # mostly zeros


@pytest.mark.parametrize("kind", ["normal", "rounded", "zeros"])
@pytest.mark.parametrize(("n", "m"), [(5, 5), (7, 12), (30, 30), (60, 45)])
def test_interval_is_the_root_of_kayentas_wilcoxon_diff(kind: str, n: int, m: int) -> None:
    rng = np.random.default_rng(n * 100 + m)
    for _ in range(5):
        x, y = _samples(rng, kind, n) + 0.3, _samples(rng, kind, m)
        for confidence in (0.95, 0.98):
            lower, upper, estimate = location_shift(x, y, confidence)
            assert (lower, upper) == pytest.approx(kayenta_interval(x, y, confidence), abs=1e-9)
            # The estimate is a root of wilcoxonDiff(d, 0) (a zero plateau or a sign change).
            eps = 1e-9
            assert kayenta_wilcoxon_diff(estimate - eps, 0.0, x, y) >= 0
            assert kayenta_wilcoxon_diff(estimate + eps, 0.0, x, y) <= 0
            assert estimate == float(np.median(np.subtract.outer(x, y)))


@pytest.mark.parametrize("kind", ["normal", "rounded", "zeros"])
def test_p_value_is_kayentas_statistic_normal_approximation(kind: str) -> None:
    # Kayenta's statistic at a shift of 0 is scipy's asymptotic one (ties, continuity), for
    # small samples too, where method="auto" would switch to the exact distribution.
    # MW "Wilcoxon Diff Function" (-1.229416 on 850 vs 850 tied samples) was checked the same
    # way when porting; its data is not embedded here.
    rng = np.random.default_rng(11)
    for n, m in [(4, 5), (6, 6), (30, 20)]:
        x, y = _samples(rng, kind, n) + 0.5, _samples(rng, kind, m)
        z = abs(kayenta_wilcoxon_diff(0.0, 0.0, x, y))
        p_value = classify(x.tolist(), y.tolist()).p_value
        assert p_value == pytest.approx(min(1.0, 2 * stats.norm.sf(z)), rel=1e-9)


# --- SCORER: every WeightedSumScorer test. Groups as in Kayenta; no weights -> equal shares.
def m(name: str, label: str, critical: bool = False) -> MetricClassification:
    return MetricClassification(name, label, f"{name} {label}", critical)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("metrics", "groups", "weights", "summary"),
    [
        pytest.param(
            [m("p", "Pass")],
            {"p": ["test-group"]},
            {},
            100.0,
            id="Weighted Sum Group Scorer: Single Metric Pass",
        ),
        pytest.param(
            [m("h", "High")],
            {"h": ["test-group"]},
            {},
            0.0,
            id="Weighted Sum Group Scorer: Single Metric Fail",
        ),
        pytest.param(
            [m("p", "Pass"), m("h", "High")],
            {"p": ["g"], "h": ["g"]},
            {},
            50.0,
            id="Weighted Sum Group Scorer: One Group, Two Metrics",
        ),
        pytest.param(
            [m("p", "Pass"), m("h", "High"), m("l", "Low")],
            {"p": ["g"], "h": ["g"], "l": ["g"]},
            {},
            33.33,
            id="Weighted Sum Group Scorer: One Group, Three Metrics",
        ),
        pytest.param(
            [m("p1", "Pass"), m("p2", "Pass"), m("f", "High")],
            {"p1": ["group-1"], "p2": ["group-1"], "f": ["group-2"]},
            {"group-1": 75.0, "group-2": 25.0},
            75.0,
            id="Weighted Sum Group Scorer: Two Groups, Three Metrics",
        ),
        pytest.param(
            [m("p", "Pass"), m("f1", "High"), m("f2", "High")],
            {"p": ["group-1"], "f1": ["group-1"], "f2": ["group-2"]},
            {"group-1": 50.0, "group-2": 50.0},
            25.0,
            id="Weighted Sum Group Scorer: Two Groups, Three Metrics (Equal Weight)",
        ),
        pytest.param(
            [m("p", "Pass"), m("nd", "Nodata"), m("f", "High")],
            {"p": ["group-1"], "nd": ["group-1"], "f": ["group-2"]},
            {"group-1": 50.0, "group-2": 50.0},
            50.0,
            id="Weighted Sum Group Scorer: Two Groups, Three Metrics (Equal Weight), one NoData",
        ),
        pytest.param(
            [m("p", "Pass"), m("h", "High", critical=True)],
            {"p": ["g"], "h": ["g"]},
            {},
            0.0,
            id="Weighted Sum Group Scorer: Two Metrics, one good (normal), one fail (critical)",
        ),
        pytest.param(
            [m("l", "Low"), m("p2", "Pass", critical=True)],
            {"l": ["g"], "p2": ["g"]},
            {},
            50.0,
            id="Weighted Sum Group Scorer: Two Metrics, one low (normal), one good (critical)",
        ),
        pytest.param(
            [m("p", "Pass"), m("nd", "Nodata", critical=True)],
            {"p": ["g"], "nd": ["g"]},
            {},
            0.0,
            id="Weighted Sum Group Scorer: Two Metrics, one good (normal), one nodata (critical)",
        ),
        pytest.param(
            [m("h", "High"), m("l", "Low"), m("p", "Pass"), m("p2", "High")],
            {"h": ["group1"], "l": ["group1"], "p": ["group1"], "p2": ["group2"]},
            {"group1": 15.0, "group2": 85.0},
            5.0,
            id="Weighted Sum Group Scorer: Two Groups (Unequal Weight), Four Metrics",
        ),
    ],
)
def test_kayenta_scorer_cases(
    metrics: list[MetricClassification],
    groups: dict[str, list[str]],
    weights: dict[str, float],
    summary: float,
) -> None:
    assert score(metrics, groups=groups, group_weights=weights).score == summary


def test_kayenta_scorer_single_group_nodata() -> None:
    # SCORER "Weighted Sum Group Scorer: Single group Nodata".
    s = score([m("nd", "Nodata")], groups={"nd": ["test-group-nodata"]})
    assert len(s.groups) == 1
    assert s.groups[0].score == 0.0
    assert s.score == 0.0


def test_kayenta_scorer_two_groups_one_pass_one_nodata() -> None:
    # SCORER "Weighted Sum Group Scorer: Two Groups, one Pass, one Nodata": the no-data group
    # scores 0 itself but counts 100 in the summary.
    s = score(
        [m("p1a", "Pass"), m("p1b", "Pass"), m("nd", "Nodata")],
        groups={
            "p1a": ["test-group-pass"],
            "p1b": ["test-group-pass"],
            "nd": ["test-group-nodata"],
        },
    )
    assert sorted(g.score for g in s.groups) == [0.0, 100.0]
    assert s.score == 100.0


# --- Properties. Seeded numpy draws (hypothesis is not a dependency).
def shifted(
    seed: int, k: float, n: int = 60, sigma: float = 10.0
) -> tuple[list[float], list[float]]:
    """Canary ~ N(100 + k sigma, sigma), stable ~ N(100, sigma), n samples each."""
    rng = np.random.default_rng(seed)
    stable = rng.normal(100.0, sigma, n)
    canary = rng.normal(100.0 + k * sigma, sigma, n)
    return canary.tolist(), stable.tolist()


def k_bound(n: int, confidence: float = 0.98, tolerance: float = 0.25, miss: float = 1e-3) -> float:
    """The shift (in sigmas) that is High with probability 1 - miss, n vs n normal samples.

    High needs the test of a shift of tolerance * estimate (~ tolerance * k sigma) to reject at
    1 - confidence two-sided: its z is about (1 - tolerance) k sqrt(n/2) sqrt(3/pi) (3/pi: the
    Mann-Whitney test's efficiency against the t-test on normal data), so
    k = (z_{alpha/2} + z_miss) / ((1 - tolerance) sqrt(n/2) sqrt(3/pi)).
    60 vs 60 at the defaults: 1.35 sigma (0.58 sigma for an even chance).
    """
    z = stats.norm.isf((1 - confidence) / 2) + stats.norm.isf(miss)
    return float(z / ((1 - tolerance) * math.sqrt(n / 2) * math.sqrt(3 / math.pi)))


def test_k_bound_values() -> None:
    assert k_bound(60) == pytest.approx(1.35, abs=0.01)
    assert k_bound(60, miss=0.5) == pytest.approx(0.58, abs=0.01)


def test_identical_samples_pass() -> None:
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 60, 200):
        canary = rng.lognormal(0.0, 1.0, n)
        result = classify(canary.tolist(), rng.permutation(canary).tolist())
        assert result.classification == "Pass"
        assert not result.critical


def test_same_distribution_rarely_leaves_pass() -> None:
    # Two-sided at 98%: at most 2% of draws are High or Low, fewer with the tolerance.
    results = [classify(*shifted(seed, 0.0)).classification for seed in range(200)]
    assert sum(label != "Pass" for label in results) <= 4


@pytest.mark.parametrize("n", [20, 60])
def test_shift_above_the_bound_is_high_and_below_is_low(n: int) -> None:
    k = k_bound(n)
    for seed in range(100):
        assert classify(*shifted(seed, k, n)).classification == "High"
        assert classify(*shifted(seed, -k, n)).classification == "Low"


def test_shift_at_the_even_chance_bound_is_high_about_half_the_time() -> None:
    k = k_bound(60, miss=0.5)
    highs = sum(classify(*shifted(seed, k)).classification == "High" for seed in range(100))
    assert 30 <= highs <= 70


def test_small_shift_is_rarely_high() -> None:
    highs = sum(classify(*shifted(seed, 0.1)).classification == "High" for seed in range(100))
    assert highs <= 10


def test_swapping_canary_and_stable_swaps_high_and_low() -> None:
    for seed in range(20):
        canary, stable = shifted(seed, 0.7)
        a, b = classify(canary, stable).classification, classify(stable, canary).classification
        assert (a, b) in {("High", "Low"), ("Pass", "Pass")}


def test_direction_is_respected() -> None:
    up, down = shifted(3, 2.0), shifted(3, -2.0)
    assert classify(*up, direction="increase").classification == "High"
    assert classify(*up, direction="decrease").classification == "Pass"
    assert classify(*down, direction="decrease").classification == "Low"
    assert classify(*down, direction="increase").classification == "Pass"
    assert classify(*down, direction="either").classification == "Low"


def test_effect_size_gates_high_and_says_so() -> None:
    canary, stable = shifted(4, 2.0)  # about +20%: mean ratio ~1.2
    assert classify(canary, stable, allowed_increase=1.1).classification == "High"
    held = classify(canary, stable, allowed_increase=1.5)
    assert held.classification == "Pass"
    assert "within allowedIncrease 1.5" in held.reason
    assert held.effect_size == pytest.approx(np.mean(canary) / np.mean(stable))


def test_cles_effect_size_is_the_share_of_pairs_canary_wins() -> None:
    canary, stable = [3.0, 4.0, 5.0], [1.0, 2.0, 4.0, 6.0]
    result = classify(canary, stable, effect_size_measure="cles")
    wins = sum((c > s) + 0.5 * (c == s) for c in canary for s in stable)
    assert result.effect_size == pytest.approx(wins / 12)


def test_critical_thresholds() -> None:
    canary, stable = shifted(5, 3.0)  # mean ratio ~1.3
    assert classify(canary, stable, critical=True).critical
    below = classify(canary, stable, critical=True, critical_increase=2.0)
    assert (below.classification, below.critical) == ("High", False)
    assert not classify(canary, stable).critical


def test_reason_line() -> None:
    stable = (0.100 + np.linspace(-0.004, 0.004, 60)).tolist()
    canary = [v * 1.31 for v in stable]
    result = classify(canary, stable, name="latency-p50")
    assert re.fullmatch(
        r"canary latency-p50 0\.131 vs stable 0\.1 \(\+31%\): High at 98% confidence, "
        r"p=[0-9.e-]+, 60 vs 60 samples",
        result.reason,
    ), result.reason
    assert result.p_value < 0.001
    assert result.interval[0] <= result.estimate <= result.interval[1]
    assert (result.canary_count, result.stable_count) == (60, 60)
    crit = classify(canary, stable, name="latency-p50", critical=True)
    assert "High (critical) at 98%" in crit.reason


def test_nan_remove_drops_samples_and_replace_makes_them_zero() -> None:
    canary, stable = shifted(6, 0.0)
    with_nans = canary[:50] + [math.nan] * 10
    removed = classify(with_nans, stable)
    assert (removed.classification, removed.canary_count) == ("Pass", 50)
    replaced = classify(with_nans, stable, nan_strategy="replace")
    assert replaced.canary_count == 60
    assert replaced.effect_size == pytest.approx(sum(canary[:50]) / 60 / np.mean(stable))
    all_nan = [math.nan] * 60
    assert classify(all_nan, stable).classification == "Nodata"
    assert classify(all_nan, stable, nan_strategy="replace").classification == "Low"


def test_no_data_rules() -> None:
    stable = shifted(7, 0.0)[1]
    assert classify([], stable).classification == "Nodata"
    assert classify([], stable, must_have_data=True).classification == "NodataFailMetric"
    # mustHaveData does not apply to a critical metric: its Nodata fails the run outright.
    crit = classify([], stable, must_have_data=True, critical=True)
    assert (crit.classification, crit.critical) == ("Nodata", True)
    assert classify(stable, []).classification == "Nodata"


def test_non_finite_samples_are_an_error() -> None:
    canary, stable = shifted(8, 0.0)
    result = classify([*canary, math.inf], stable)
    assert (result.classification, result.critical) == ("Error", False)
    assert classify([*canary, math.inf], stable, critical=True).critical


# --- The run.
def test_score_is_passed_over_judged_and_no_data_is_left_out() -> None:
    s = score([m("a", "Pass"), m("b", "Pass"), m("c", "High"), m("d", "Nodata")])
    assert s.score == 66.67  # 2 of 3 judged; Nodata (1 of 4, under half) is not judged
    assert s.reason is None
    assert s.metrics == 4
    assert s.groups[0].label_counts == {"Pass": 2, "High": 1, "Nodata": 1}


def test_must_have_data_counts_as_not_passed() -> None:
    assert score([m("a", "Pass"), m("b", "NodataFailMetric")]).score == 50.0


def test_half_the_metrics_without_data_fails() -> None:
    s = score([m("a", "Pass"), m("b", "Pass"), m("c", "Nodata"), m("d", "Nodata")])
    assert (s.score, verdict(s)) == (0.0, "Fail")
    assert s.reason == "Canary Failed: 50% or more metrics returned NODATA"
    assert score([m("a", "Pass"), m("b", "Pass"), m("c", "Nodata")]).score == 100.0


def test_a_critical_metric_failing_fails_the_run() -> None:
    canary, stable = shifted(9, 3.0)
    passing = [classify(*shifted(100 + i, 0.0), name=f"ok-{i}") for i in range(9)]
    assert all(r.classification == "Pass" for r in passing)
    normal = score([*passing, classify(canary, stable, name="latency")])
    assert (normal.score, verdict(normal)) == (90.0, "Pass")
    critical = score([*passing, classify(canary, stable, name="latency", critical=True)])
    assert (critical.score, verdict(critical)) == (0.0, "Fail")
    assert critical.reason is not None
    assert critical.reason.startswith("Canary Failed: canary latency ")


def test_no_metrics_fails() -> None:
    assert verdict(score([])) == "Fail"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(100.0, "Pass"), (90.0, "Pass"), (89.99, "Marginal"), (75.0, "Marginal"), (74.99, "Fail")],
)
def test_verdict_thresholds(value: float, expected: str) -> None:
    assert verdict(Score(value, (), 1)) == expected


def test_verdict_custom_thresholds_and_rule_failures() -> None:
    assert verdict(Score(80.0, (), 1), pass_threshold=80, marginal_threshold=50) == "Pass"
    assert verdict(Score(60.0, (), 1), pass_threshold=80, marginal_threshold=50) == "Marginal"
    assert verdict(Score(0.0, (), 1, "Canary Failed: x"), 0, 0) == "Fail"


def test_unweighted_groups_share_what_the_weights_leave() -> None:
    metrics = [m("a", "Pass"), m("b", "High"), m("c", "Pass")]
    s = score(metrics, groups={"a": ["w"], "b": ["x"], "c": ["y"]}, group_weights={"w": 50.0})
    assert s.score == 75.0  # w: 100 * 0.5, x: 0 * 0.25, y: 100 * 0.25


def test_summary_rounds_half_up_like_commons_math_precision_round() -> None:
    # Precision.round(2.675, 2) is 2.68 (BigDecimal of "2.675", HALF_UP); Python's round()
    # of the nearest double gives 2.67.
    metrics = [m("a", "Pass"), m("b", "High"), m("c", "High")]
    s = score(
        metrics, groups={"a": ["x"], "b": ["x"], "c": ["y"]}, group_weights={"x": 5.35, "y": 94.65}
    )
    assert s.score == 2.68


def test_effect_size_thresholds_are_inclusive() -> None:
    stable = [float(v) for v in range(1, 31)]
    canary = [2 * v for v in stable]  # mean ratio exactly 2.0
    assert classify(canary, stable, allowed_increase=2.0).classification == "High"
    assert classify(canary, stable, allowed_increase=2.0001).classification == "Pass"
    assert classify(canary, stable, critical=True, critical_increase=2.0).critical
    assert classify(stable, canary, allowed_decrease=0.5).classification == "Low"
    assert classify(stable, canary, critical=True, critical_decrease=0.5).critical


def test_tolerance_is_a_fraction_of_the_estimate() -> None:
    # A shift that is significant but whose interval starts below tolerance * estimate:
    # Kayenta's (lower > tolerance * |estimate|) is Pass; a smaller tolerance makes it High.
    canary, stable = shifted(12, 0.6)
    loose = classify(canary, stable, tolerance=0.0)
    strict = classify(canary, stable, tolerance=0.9)
    lower, _ = loose.interval
    assert 0 < lower < 0.9 * loose.estimate
    assert (loose.classification, strict.classification) == ("High", "Pass")
    assert loose.p_value < 0.02


@pytest.mark.parametrize("label", ["Low", "Nodata", "Error"])
def test_any_critical_metric_not_passing_fails_the_run(label: str) -> None:
    # Kayenta's criticalFailures: critical and not Pass (1 of 4: under the no-data rule).
    s = score([m("a", "Pass"), m("b", "Pass"), m("c", "Pass"), m("d", label, critical=True)])
    assert (s.score, verdict(s)) == (0.0, "Fail")
    assert s.reason == f"Canary Failed: d {label}"
