"""SGLang's frontend test programs and examples in nanolang's decorator API, written as
literally as possible (``sgl`` is ``nl``). Sources: sgl-project/sglang
python/sglang/test/test_programs.py and examples/frontend_language/usage/*.py."""

from __future__ import annotations

from enum import StrEnum
from math import exp

from pydantic import BaseModel

import nanolang as nl

REGEX_INT = r"[-+]?[0-9]+"
REGEX_FLOAT = r"[-+]?[0-9]*\.?[0-9]+"
REGEX_STR = r"\"[\w\d\s]*\""


@nl.function
def few_shot_qa(s, question):
    s += "The following are questions with answers.\n\n"
    s += "Q: What is the capital of France?\n"
    s += "A: Paris\n"
    s += "Q: What is the capital of Germany?\n"
    s += "A: Berlin\n"
    s += "Q: What is the capital of Italy?\n"
    s += "A: Rome\n"
    s += "Q: " + question + "\n"
    s += "A:" + nl.gen("answer", stop="\n", temperature=0)


@nl.function
def answer_mt_bench(s, question_1, question_2):
    s += nl.system("You are a helpful assistant.")
    s += nl.user(question_1)
    s += nl.assistant(nl.gen("answer_1"))
    with s.user():
        s += question_2
    with s.assistant():
        s += nl.gen("answer_2")


@nl.function
def true_or_false(s, statement):
    s += "Determine whether the statement below is True, False, or Unknown.\n"
    s += "Statement: The capital of France is Pairs.\n"
    s += "Answer: True\n"
    s += "Statement: " + statement + "\n"
    s += "Answer:" + nl.select("answer", ["True", "False", "Unknown"])


@nl.function
def decode_int(s):
    s += "The number of hours in a day is " + nl.gen_int("hours") + "\n"
    s += "The number of days in a year is " + nl.gen_int("days") + "\n"


@nl.function
def decode_json_regex(s):
    s += "Generate a JSON object to describe the basic city information of Paris.\n"
    s += "Here are the JSON object:\n"
    with s.var_scope("json_output"):
        s += "{\n"
        s += '  "name": ' + nl.gen(regex=REGEX_STR) + ",\n"
        s += '  "population": ' + nl.gen(regex=REGEX_INT, stop=[" ", "\n"]) + ",\n"
        s += '  "area": ' + nl.gen(regex=REGEX_INT, stop=[" ", "\n"]) + ",\n"
        s += '  "latitude": ' + nl.gen(regex=REGEX_FLOAT, stop=[" ", "\n"]) + "\n"
        s += "}"


@nl.function
def decode_json(s):
    s += "Generate a JSON object to describe the basic city information of Paris.\n"
    with s.var_scope("json_output"):
        s += "{\n"
        s += '  "name": ' + nl.gen_string() + ",\n"
        s += '  "population": ' + nl.gen_int() + ",\n"
        s += '  "area": ' + nl.gen(dtype=int) + ",\n"
        s += '  "country": ' + nl.gen_string() + ",\n"
        s += '  "timezone": ' + nl.gen(dtype=str) + "\n"
        s += "}"


@nl.function
def expert_answer(s, question):
    s += "Question: " + question + "\n"
    s += "A good person to answer this question is" + nl.gen("expert", stop=[".", "\n"]) + ".\n"
    s += "For example," + s["expert"] + " would answer that " + nl.gen("answer", stop=".") + "."


def calculate(expression):
    """SGLang's test evaluates the generated expression; a port must not run arbitrary text,
    so this one computes products and sums of integers and says "error" otherwise."""
    try:
        terms = [t.strip() for t in expression.replace("+", "*+").split("*") if t.strip()]
        total = 1
        for term in terms:
            total = total + int(term[1:]) if term.startswith("+") else total * int(term)
        return f"{total}"
    except ValueError:
        return "error"


@nl.function
def tool_use(s, lhs, rhs):
    s += "Please perform computations using a calculator. You can use calculate(expression) to get the results.\n"  # noqa: E501
    s += "For example,\ncalculate(1+2)=3\ncalculate(3*4)=12\n"
    s += "Question: What is the product of " + str(lhs) + " and " + str(rhs) + "?\n"
    s += "Answer: The answer is calculate(" + nl.gen("expression", stop=")") + ") = "
    with s.var_scope("answer"):
        s += calculate(s["expression"])


@nl.function
def react(s, question):
    s += """
Question: Which country does the founder of Microsoft live in?
Thought 1: I need to search for the founder of Microsoft.
Action 1: Search [Founder of Microsoft].
Observation 1: The founder of Microsoft is Bill Gates.
Thought 2: I need to search for the country where Bill Gates lives in.
Action 2: Search [Where does Bill Gates live].
Observation 2: Bill Gates lives in the United States.
Thought 3: The answer is the United States.
Action 3: Finish [United States].\n
"""
    s += "Question: " + question + "\n"
    for i in range(1, 5):
        s += f"Thought {i}:" + nl.gen(stop=[".", "\n"]) + ".\n"
        s += f"Action {i}: " + nl.select(f"action_{i}", ["Search", "Finish"])
        if s[f"action_{i}"] == "Search":
            s += " [" + nl.gen(stop="]") + "].\n"
            s += f"Observation {i}:" + nl.gen(stop=[".", "\n"]) + ".\n"
        else:
            s += " [" + nl.gen("answer", stop="]") + "].\n"
            break


MAX_TOKENS = 64
FORK_SIZE = 5


@nl.function
def parallel_decoding(s, topic):
    s += "Act as a helpful assistant.\n"
    s += "USER: Give some tips for " + topic + ".\n"
    s += "ASSISTANT: Okay. Here are " + str(FORK_SIZE) + " concise tips, each under 8 words:\n"
    for i in range(1, 1 + FORK_SIZE):
        s += f"{i}." + nl.gen(max_tokens=16, stop=[".", "\n"]) + ".\n"
    forks = s.fork(FORK_SIZE)
    for i in range(FORK_SIZE):
        forks[i] += f"Now, I expand tip {i + 1} into a detailed paragraph:\nTip {i + 1}:"
        forks[i] += nl.gen("detailed_tip", MAX_TOKENS, stop=["\n\n"])
    forks.join()
    s += "Here are these tips with detailed explanation:\n"
    for i in range(FORK_SIZE):
        s += f"Tip {i + 1}:" + forks[i]["detailed_tip"] + "\n"
    s += "\nIn summary," + nl.gen("summary", max_tokens=512)


@nl.function
def parallel_encoding(s, question, context_0, context_1, context_2):
    s += "USER: I will ask a question based on some statements.\n"
    s += "ASSISTANT: Sure. I will give the answer.\n"
    s += "USER: Please memorize these statements.\n"
    contexts = [context_0, context_1, context_2]
    forks = s.fork(len(contexts))
    forks += lambda i: f"Statement {i}: " + contexts[i] + "\n"
    forks.join(mode="concate_and_append")
    s += "Now, please answer the following question. Do not list options."
    s += "\nQuestion: " + question + "\n"
    s += "ASSISTANT:" + nl.gen("answer", max_tokens=MAX_TOKENS)


IP_REGEX = r"((25[0-5]|2[0-4]\d|[01]?\d\d?).){3}(25[0-5]|2[0-4]\d|[01]?\d\d?)"


@nl.function
def regex_gen(s):
    s += "Q: What is the IP address of the Google DNS servers?\n"
    s += "A: " + nl.gen("answer", temperature=0, regex=IP_REGEX)


@nl.function
def dtype_gen(s):
    s += "Q: What is the full name of DNS?\n"
    s += "A: The full nams is " + nl.gen("str_res", dtype=str, stop="\n") + "\n"
    s += "Q: Which year was DNS invented?\n"
    s += "A: " + nl.gen("int_res", dtype=int) + "\n"
    s += "Q: What is the value of pi?\n"
    s += "A: " + nl.gen("float_res", dtype=float) + "\n"
    s += "Q: Is the sky blue?\n"
    s += "A: " + nl.gen("bool_res", dtype=bool) + "\n"


@nl.function
def few_shot_hellaswag(s, few_shot_examples, question, choices):
    s += few_shot_examples + question
    s += nl.select("answer", choices=choices)


@nl.function
def convo_1(s):
    s += nl.user("What is the capital of the United States?")
    s += nl.assistant(nl.gen("answer", min_tokens=64, max_tokens=128))


@nl.function
def readme_tool_use(s, question):
    s += "To answer this question: " + question + ". "
    s += "I need to use a " + nl.gen("tool", choices=["calculator", "search engine"]) + ". "
    if s["tool"] == "calculator":
        s += "The math expression is" + nl.gen("expression")
    elif s["tool"] == "search engine":
        s += "The key word to search is" + nl.gen("word")


@nl.function
def tip_suggestion(s):
    s += "Here are two tips for staying healthy: 1. Balanced Diet. 2. Regular Exercise.\n\n"
    forks = s.fork(2)
    for i, f in enumerate(forks):
        f += f"Now, expand tip {i + 1} into a paragraph:\n"
        f += nl.gen("detailed_tip", max_tokens=256, stop="\n\n")
    s += "Tip 1:" + forks[0]["detailed_tip"] + "\n"
    s += "Tip 2:" + forks[1]["detailed_tip"] + "\n"
    s += "In summary" + nl.gen("summary")


@nl.function
def text_qa(s, question):
    s += "Q: " + question + "\n"
    s += "A:" + nl.gen("answer", stop="\n")


@nl.function
def choices_logprob(s, question):
    s += "To answer this question: " + question + ", "
    s += "I need to use a " + nl.gen("tool", choices=["calculator", "search engine"])


@nl.function
def parallel_sample(s, question, n):
    s += (
        "Question: Compute 1 + 2 + 3\n"
        "Reasoning: I need to use a calculator.\n"
        "Tool: calculator\n"
        "Answer: 6\n"
        "Question: Compute 3 + 2 + 2\n"
        "Reasoning: I will try a calculator.\n"
        "Tool: calculator\n"
        "Answer: 7\n"
    )
    s += "Question: " + question + "\n"
    forks = s.fork(n)
    forks += "Reasoning:" + nl.gen("reasoning", stop="\n") + "\n"
    forks += "Tool:" + nl.gen("tool", choices=["calculator", "browser"]) + "\n"
    forks += "Answer:" + nl.gen("answer", stop="\n") + "\n"
    forks.join()


@nl.function
def qa(s, question):
    s += nl.system("You are a helpful assistant.")
    s += nl.user(question)
    s += nl.assistant(nl.gen("answer"))


@nl.function
def industry_sweep(s, sector_context, companies, research_question):
    s += sector_context + "\n"
    s += "Research question: " + research_question + "\n\n"
    tickers = list(companies.keys())
    forks = s.fork(len(tickers))
    for i, ticker in enumerate(tickers):
        forks[i] += f"--- Company: {ticker} ---\n{companies[ticker]}\n\n"
        forks[i] += f"Analysis of {ticker} against the research question:\n"
        forks[i] += nl.gen(f"analysis_{ticker}", max_tokens=400, stop="\n\n", temperature=0.3)
    s += "Per-company analyses gathered:\n"
    for i, ticker in enumerate(tickers):
        s += f"\n[{ticker}] " + forks[i][f"analysis_{ticker}"]
    s += "\n\nFinal ranking and top pick with rationale:\n"
    s += nl.gen("sector_pick", max_tokens=400, temperature=0.2)


# quick_start/local_example_chat.py (the API chat examples run the same program)
@nl.function
def multi_turn_question(s, question_1, question_2):
    s += nl.user(question_1)
    s += nl.assistant(nl.gen("answer_1", max_tokens=256))
    s += nl.user(question_2)
    s += nl.assistant(nl.gen("answer_2", max_tokens=256))


# quick_start/openai_example_n.py
@nl.function
def multi_turn_n(s, question_1, question_2):
    s += nl.system("You are a helpful assistant.")
    s += nl.user(question_1)
    s += nl.assistant(nl.gen("answer_1", max_tokens=1024, n=2))
    s += nl.user(question_2)
    s += nl.assistant(
        nl.gen(
            "answer_2",
            max_tokens=1024,
        )
    )


# quick_start/local_example_complete.py
@nl.function
def few_shot_qa_complete(s, question):
    s += """The following are questions with answers.
Q: What is the capital of France?
A: Paris
Q: What is the capital of Germany?
A: Berlin
Q: What is the capital of Italy?
A: Rome
"""
    s += "Q: " + question + "\n"
    s += "A:" + nl.gen("answer", stop="\n", temperature=0)


# usage/json_decode.py
character_regex = (
    r"""\{\n"""
    + r"""    "name": "[\w\d\s]{1,16}",\n"""
    + r"""    "house": "(Gryffindor|Slytherin|Ravenclaw|Hufflepuff)",\n"""
    + r"""    "blood status": "(Pure-blood|Half-blood|Muggle-born)",\n"""
    + r"""    "occupation": "(student|teacher|auror|ministry of magic|death eater|order of the phoenix)",\n"""  # noqa: E501
    + r"""    "wand": \{\n"""
    + r"""        "wood": "[\w\d\s]{1,16}",\n"""
    + r"""        "core": "[\w\d\s]{1,16}",\n"""
    + r"""        "length": [0-9]{1,2}\.[0-9]{0,2}\n"""
    + r"""    \},\n"""
    + r"""    "alive": "(Alive|Deceased)",\n"""
    + r"""    "patronus": "[\w\d\s]{1,16}",\n"""
    + r"""    "bogart": "[\w\d\s]{1,16}"\n"""
    + r"""\}"""
)


@nl.function
def character_gen(s, name):
    s += (
        name
        + " is a character in Harry Potter. Please fill in the following information about this character.\n"  # noqa: E501
    )
    s += "The constrained regex is:\n"
    s += character_regex + "\n"
    s += "The JSON output is:\n"
    s += nl.gen("json_output", max_tokens=256, regex=character_regex)


class Weapon(StrEnum):
    sword = "sword"
    axe = "axe"
    mace = "mace"
    spear = "spear"
    bow = "bow"
    crossbow = "crossbow"


class Wizard(BaseModel):
    name: str
    age: int
    weapon: Weapon


class Character(BaseModel):  # usage/triton/models/character_generation
    name: str
    eye_color: str
    house: str


# what SGLang's build_regex_from_object (outlines' build_regex_from_schema) makes of the models
_STR = r'"([^"\\\x00-\x1F\x7F-\x9F]|\\["\\/bfnrt])*"'
WIZARD_REGEX = (
    r'\{[ ]?"name"[ ]?:[ ]?' + _STR + r'[ ]?,[ ]?"age"[ ]?:[ ]?(-)?(0|[1-9][0-9]*)[ ]?,[ ]?'
    r'"weapon"[ ]?:[ ]?("sword"|"axe"|"mace"|"spear"|"bow"|"crossbow")[ ]?\}'
)
CHARACTER_REGEX = (
    r'\{[ ]?"name"[ ]?:[ ]?' + _STR + r'[ ]?,[ ]?"eye_color"[ ]?:[ ]?' + _STR
    + r'[ ]?,[ ]?"house"[ ]?:[ ]?' + _STR + r"[ ]?\}"
)  # fmt: skip


@nl.function
def pydantic_wizard_gen(s):
    s += "Give me a description about a wizard in the JSON format.\n"
    s += nl.gen(
        "character",
        max_tokens=128,
        temperature=0,
        regex=WIZARD_REGEX,  # build_regex_from_object(Wizard)
    )


@nl.function
def triton_character_gen(s, name):
    s += (
        name
        + " is a character in Harry Potter. Please fill in the following information about this character.\n"  # noqa: E501
    )
    s += nl.gen("json_output", max_tokens=256, regex=CHARACTER_REGEX)


# usage/chinese_regex.py
chinese_character_regex = (
    r"""\{\n"""
    + r"""    "姓名": "[^"]{1,32}",\n"""
    + r"""    "学院": "(格兰芬多|赫奇帕奇|拉文克劳|斯莱特林)",\n"""
    + r"""    "血型": "(纯血|混血|麻瓜)",\n"""
    + r"""    "职业": "(学生|教师|傲罗|魔法部|食死徒|凤凰社成员)",\n"""
    + r"""    "魔杖": \{\n"""
    + r"""        "材质": "[^"]{1,32}",\n"""
    + r"""        "杖芯": "[^"]{1,32}",\n"""
    + r"""        "长度": [0-9]{1,2}\.[0-9]{0,2}\n"""
    + r"""    \},\n"""
    + r"""    "存活": "(存活|死亡)",\n"""
    + r"""    "守护神": "[^"]{1,32}",\n"""
    + r"""    "博格特": "[^"]{1,32}"\n"""
    + r"""\}"""
)


@nl.function
def chinese_character_gen(s, name):
    s += name + " 是一名哈利波特系列小说中的角色。请填写以下关于这个角色的信息。"
    s += """\
这是一个例子
{
    "姓名": "哈利波特",
    "学院": "格兰芬多",
    "血型": "混血",
    "职业": "学生",
    "魔杖": {
        "材质": "冬青木",
        "杖芯": "凤凰尾羽",
        "长度": 11.0
    },
    "存活": "存活",
    "守护神": "麋鹿",
    "博格特": "摄魂怪"
}
"""
    s += f"现在请你填写{name}的信息：\n"
    s += nl.gen("json_output", max_tokens=256, regex=chinese_character_regex)


@nl.function
def cot_decoding(s, question, get_top_k, is_chat_model, verbose):
    """CoT Decoding: http://arxiv.org/abs/2402.10200 (usage/cot_decoding.py; what it prints
    per path is returned: the token, its probability, the score and the answer)."""

    if is_chat_model:
        s += nl.user("Question: " + question + "\nAnswer:")
        s += nl.assistant_begin()
    else:
        s += "Question: " + question + "\nAnswer:"

    step_0 = s.fork(1)[0]
    forks = s.fork(get_top_k)
    answer_forks = s.fork(get_top_k)

    # decoding step 0
    step_0 += nl.gen(
        "get_top_k",
        max_tokens=0,
        return_logprob=True,
        top_logprobs_num=get_top_k,
        return_text_in_logprobs=True,
    )
    logprobs = step_0.get_meta_info("get_top_k")["output_top_logprobs"][0]

    paths = []
    for idx, (f, token) in enumerate(zip(forks, logprobs, strict=False)):
        logprob, _token_id, text = token
        f += text

        if text == "<|end_of_text|>":
            paths.append({"text": text, "prob": exp(logprob), "score": "nan", "answer": "nan"})
            continue

        # continue greedy decoding
        f += nl.gen(
            "answer",
            temperature=0,
            max_tokens=1024,
            return_logprob=True,
            top_logprobs_num=2,
            return_text_in_logprobs=True,
        )

        # calculate probability disparity between the top and secondary tokens
        x1s = [exp(xt[0][0]) for xt in f.get_meta_info("answer")["output_top_logprobs"]]
        x2s = [exp(xt[1][0]) for xt in f.get_meta_info("answer")["output_top_logprobs"]]
        delta = (sum(x1s) - sum(x2s)) / len(x1s)

        # extract the answer span (without the '<|end_of_text|>' token)
        answer_forks[idx] += text + f["answer"] + "\nSo the answer is"
        answer_forks[idx] += nl.gen(
            "answer_span",
            temperature=0,
            max_tokens=64,
            return_logprob=True,
            top_logprobs_num=2,
            return_text_in_logprobs=True,
        )
        answer = answer_forks[idx]["answer_span"].replace("\n", " ").strip(":")
        paths.append({"text": text, "prob": exp(logprob), "score": delta, "answer": answer})
    return paths
