"""Writes oracle_cases.jsonl: answer pairs in many notations with the verdicts of the real Math-Verify.

The verdicts come from Math-Verify 0.8.0 (5d148cf) with latex2sympy2_extended 1.10.2 (0873506, parser generated with
ANTLR 4.13.2) and sympy 1.14, imported from PYTHONPATH; nothing of theirs is copied here. Three kinds of rows:
  generated  notations × wrappers from the lists below, compared with compare_strings' configuration;
  mutated    math_verify_cases.jsonl strings with a few random edits (seeded);
  lmm        label/response pairs scored with LMM-R1's verify_math (math_verifier.py at f917f18), expected = acc.
latex2sympy2_extended's parser must be generated first (in its src/latex2sympy2_extended):
  java -jar antlr-4.13.2-complete.jar PS.g4 -o gen/antlr4_13_2   (plus empty gen/__init__.py files).
Run from the repository root:  PYTHONPATH=/path/to/latex2sympy2_extended/src:/path/to/math_verify/src \
    python3 tests/LmmR1.Rewards.Tests/Data/gen_oracle_cases.py ../shared/reference/math_verify_cases.jsonl
"""
import json, random, sys
from latex2sympy2_extended import NormalizationConfig
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

BASES = {
 'int42': ['42','42.0','042','\\boxed{42}','42\\text{ cm}','42 cm','42^\\circ','4.2\\times 10','\\frac{84}{2}','40+2','42\\%','42,000','\\$42'],
 'half': ['\\frac{1}{2}','\\dfrac{1}{2}','1/2','0.5','.5','\\frac12','50\\%','\\tfrac{1}{2}','\\frac{2}{4}','0.50','\\left(\\frac{1}{2}\\right)','2^{-1}','\\frac{1}{3}'],
 'big': ['1234567','1,234,567','1{,}234{,}567','1\\,234\\,567','1 234 567','1234567.0','1.234567\\times10^6','1234568','12,34,567','1,234,\\!567'],
 'neg': ['-3','-3.0','- 3','-\\frac{6}{2}','(-3)','-\\left(3\\right)','3','-3\\text{ m}','-\\sqrt{9}'],
 'sqrt': ['2\\sqrt{3}','\\sqrt{12}','2\\sqrt3','\\sqrt{3}\\cdot 2','3.4641016','3.464102','2 \\sqrt{3}','\\frac{6}{\\sqrt{3}}','\\sqrt{3}^2','12^{1/2}','3\\sqrt{2}'],
 'pi': ['\\frac{\\pi}{2}','\\pi/2','\\frac{1}{2}\\pi','1.5707963','90^\\circ','\\dfrac{\\pi}{2}','0.5\\pi','\\frac{\\pi}{3}','1.570796'],
 'interval': ['[-2, 7]','[-2,7]','\\left[-2, 7\\right]','x \\in [-2,7]','-2 \\le x \\le 7','(-2, 7)','[-2, 7)','\\{-2, 7\\}','[-2,7]\\cup[8,9]','-2\\leq x\\leq 7'],
 'inf': ['(1, \\infty)','(1,+\\infty)','x > 1','(1, \\infty]','[1, \\infty)','1 < x','x \\in (1, \\infty)','(1,inf)','(1, infinity)'],
 'set': ['\\{1, 2, 3\\}','1, 2, 3','3, 2, 1','\\{3,1,2\\}','(1, 2, 3)','1,2','\\{1,2,3,3\\}','1 and 2 and 3','x = 1, 2, 3','\\{1;2;3\\}'],
 'tuple': ['(3, 4)','(4, 3)','\\left(3, 4\\right)','(3,4)','x=3, y=4','(x, y) = (3, 4)','\\{3, 4\\}','3, 4','[3, 4]'],
 'eq': ['y = 2x + 1','2x - y + 1 = 0','y=1+2x','y - 2x = 1','2x + 1','y = 2x - 1','x = (y-1)/2','4x - 2y + 2 = 0'],
 'poly': ['x^2 + 2x + 1','(x+1)^2','x^2+2x+1','(1+x)^2','x^2 + 1','x(x+2)+1','\\left(x+1\\right)^{2}','x^{2}+2 x+1'],
 'frac_expr': ['\\frac{x+1}{x-1}','\\frac{1+x}{x-1}','1+\\frac{2}{x-1}','\\frac{x-1}{x+1}','(x+1)/(x-1)','\\frac{2x+2}{2x-2}'],
 'text': ['\\text{yes}','\\text{Yes}','yes','\\text{no}','\\textbf{yes}','\\mathrm{yes}','\\text{ yes }'],
 'choice': ['\\text{(B)}','B','(B)','\\text{B}','\\mathrm{B}','\\textbf{(B)}','C'],
 'matrix': ['\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}','\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}','\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]','\\begin{pmatrix}1 & 3 \\\\ 2 & 4\\end{pmatrix}','\\begin{pmatrix}1\\\\2\\end{pmatrix}'],
 'degree': ['60^\\circ','60','60^{\\circ}','60°','\\frac{\\pi}{3}','60 degrees','60\\text{ degrees}','120^\\circ'],
 'pm': ['\\pm 2','2, -2','\\{-2, 2\\}','-2, 2','x = \\pm 2','2','x=2 \\text{ or } x=-2','x = -2, 2'],
 'log': ['\\log_2 8','3','\\log_{2}{8}','\\ln e^3','\\frac{\\ln 8}{\\ln 2}','\\log 1000','\\log_3 9'],
 'ineq': ['x \\ge 3','x \\geq 3','3 \\le x','x >= 3','[3, \\infty)','x > 3','x \\le 3','-x \\le -3'],
 'trig': ['\\sin x','\\sin(x)','\\cos(\\frac{\\pi}{2} - x)','\\sin^2 x + \\cos^2 x','1','\\tan x \\cos x','\\cos x'],
 'percent': ['25\\%','25%','0.25','\\frac{1}{4}','25 percent','25','\\frac{25}{100}','25\\text{ percent}'],
 'money': ['\\$16,386.20','16386.20','16386.2','\\$16386.2','16,386.20','16386.17','16386'],
 'exp': ['e^2','e^{2}','\\exp(2)','7.389056','\\mathrm{e}^2','2e','e^{2x}'],
}
WRAPPERS = [
 lambda a: f'${a}$', lambda a: f'The answer is ${a}$.', lambda a: f'\\boxed{{{a}}}', lambda a: f'So we get $\\boxed{{{a}}}$.',
 lambda a: f'\\[ {a} \\]', lambda a: f'Final Answer: The final answer is ${a}$. I hope it is correct.', lambda a: f'Answer: {a}',
 lambda a: f'<think>reasoning $x=1$</think><answer>$\\boxed{{{a}}}$</answer>', lambda a: f'We have $x = 3$ and so ${a}$', lambda a: a,
 lambda a: f'$$ {a} $$', lambda a: f'\\( {a} \\)', lambda a: f'the result is {a}.',
]
CONFIGS = [
 {'extraction': 'latex+expr', 'latex_boxed_match_priority': 0}, {'extraction': 'latex+expr', 'latex_boxed_match_priority': 50},
 {'extraction': 'latex', 'latex_boxed_match_priority': 0}, {'extraction': 'expr', 'latex_boxed_match_priority': 0},
 {'extraction': 'latex+expr', 'latex_boxed_match_priority': 0, 'float_rounding': 2},
 {'extraction': 'latex+expr', 'latex_boxed_match_priority': 0, 'strict': False},
 {'extraction': 'latex', 'latex_boxed_match_priority': 0, 'allow_set_relation_comp': True},
]
EDITS = ['\\frac','{','}','$','\\\\','^','_','=',',',' and ','\\left(','\\right)','\\%','\\pi','x','1','2','0.5','-','+','(',')','[',']',
         '\\sqrt','\\boxed{','\\text{cm}',' ','\\cdot','\\in','\\le','<','\\infty','\\{','\\}','e','i','\\pm',';','.','\\,','\\!','{,}','%',
         '\\circ','\\dfrac','/','*']
RESPONSES = [
 lambda a: f'<think>Let me compute. $x=2$.</think><answer>$\\boxed{{{a}}}$</answer>', lambda a: f'<think>ok</think><answer>${a}$</answer>',
 lambda a: f'<think>ok</think><answer>{a}</answer>', lambda a: f'The answer is $\\boxed{{{a}}}$.',
 lambda a: f'We find $y = 3$. Therefore the answer is ${a}$', lambda a: f'Final Answer: The final answer is ${a}$. I hope it is correct.',
 lambda a: f'\\boxed{{{a}}} and also \\boxed{{5}}', lambda a: f'answer: \\( {a} \\)',
 lambda a: f'<think>first guess $\\boxed{{1}}$</think><answer>$\\boxed{{{a}}}$</answer>',
]
LABELS = [lambda a: a, lambda a: f'${a}$', lambda a: f'$\\boxed{{{a}}}$', lambda a: f'\\boxed{{{a}}}']

def compare(gold, pred, cfg):
    bp = cfg.get('latex_boxed_match_priority', 0)
    targets = [LatexExtractionConfig(boxed_match_priority=bp) if t == 'latex' else ExprExtractionConfig() for t in cfg['extraction'].split('+')]
    g = parse(gold, targets, parsing_timeout=None)
    p = parse(pred, targets, parsing_timeout=None)
    return bool(verify(g, p, float_rounding=cfg.get('float_rounding', 6), strict=cfg.get('strict', True),
                       allow_set_relation_comp=cfg.get('allow_set_relation_comp', False), timeout_seconds=None))

def lmm_accuracy(response, label):
    sol = label.strip()
    if not sol.startswith('$'): sol = '$' + sol + '$'
    gold = parse(sol, extraction_mode='first_match', extraction_config=[LatexExtractionConfig()], parsing_timeout=None)
    if not gold: return 1.0
    answer = parse(response, extraction_config=[LatexExtractionConfig(normalization_config=NormalizationConfig(
        nits=False, malformed_operators=False, basic_latex=True, boxed='all', units=True), boxed_match_priority=0,
        try_extract_without_anchor=False)], extraction_mode='first_match', parsing_timeout=None)
    try: return float(verify(answer, gold, timeout_seconds=None))
    except Exception: return 0.0

def main(cases_path):
    rng = random.Random(20251123)
    cases = [json.loads(l) for l in open(cases_path)]
    short = [c for c in cases if len(c['gold']) < 300 and len(c['pred']) < 300]
    rows = []
    keys = list(BASES)
    for _ in range(1500):
        k1 = rng.choice(keys); k2 = k1 if rng.random() < 0.75 else rng.choice(keys)
        rows.append({'kind': 'generated', 'gold': rng.choice(WRAPPERS[:2])(rng.choice(BASES[k1])), 'pred': rng.choice(WRAPPERS)(rng.choice(BASES[k2])), 'config': rng.choice(CONFIGS)})
    def mutate(s):
        s = list(s)
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            if op < 0.35 and s: del s[rng.randrange(len(s))]
            elif op < 0.8: s.insert(rng.randint(0, len(s)), rng.choice(EDITS))
            elif s: i = rng.randrange(len(s)); j = min(len(s), i + rng.randint(1, 6)); s[i:j] = s[i:j] * 2
        return ''.join(s)
    for _ in range(1000):
        c = rng.choice(short)
        cfg = {k: v for k, v in c['config'].items() if k in ('extraction', 'latex_boxed_match_priority', 'float_rounding', 'strict', 'allow_set_relation_comp')}
        if cfg.get('latex_boxed_match_priority') is None: cfg['latex_boxed_match_priority'] = 0
        g, p = c['gold'], c['pred']
        m = rng.random()
        if m < 0.4: p = mutate(p)
        elif m < 0.6: g = mutate(g)
        elif m < 0.8: g, p = mutate(g), mutate(p)
        else: p = mutate(g)
        rows.append({'kind': 'mutated', 'gold': g, 'pred': p, 'config': cfg})
    for r in rows: r['expected'] = compare(r['gold'], r['pred'], r['config'])
    for _ in range(1000):
        k = rng.choice(keys); k2 = k if rng.random() < 0.7 else rng.choice(keys)
        label = rng.choice(LABELS)(rng.choice(BASES[k])); response = rng.choice(RESPONSES)(rng.choice(BASES[k2]))
        rows.append({'kind': 'lmm', 'gold': label, 'pred': response, 'expected': lmm_accuracy(response, label) == 1.0})
    with open('tests/LmmR1.Rewards.Tests/Data/oracle_cases.jsonl', 'w') as f:
        for r in rows: f.write(json.dumps(r, ensure_ascii=False) + '\n')

if __name__ == '__main__':
    main(sys.argv[1])
