"""Every SGLang frontend test program and usage example that needs no images and no API
speculative execution, in both nanolang forms, with the same driver (the calls SGLang's test
makes) and a check of what must hold on any model: the demo model's text is not an answer key,
so checks are structural (types, constraints, branches taken, messages, fork results)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nanolang as nl
from tests.sglang_ports import decorated as py

NANO = Path(__file__).with_name("nano")


@dataclass(frozen=True)
class Port:
    name: str
    source: str  # where it comes from in sgl-project/sglang
    nano: tuple[str, str]  # file under nano/, program name
    py: Any  # the decorated function
    drive: Callable[[Any], Any]  # runs the program as SGLang's test does
    check: Callable[[Any, str], None]  # raises AssertionError when it does not hold

    def program(self, form: str) -> Any:
        if form == "py":
            return self.py
        file, name = self.nano
        return nl.load(NANO / file, name)


@dataclass(frozen=True)
class Excluded:
    name: str
    source: str
    reason: str


def _few_shot_qa(p: Any) -> Any:
    ret = p.run(question="What is the capital of the United States?")
    rets = p.run_batch(
        [
            {"question": "What is the capital of Japan?"},
            {"question": "What is the capital of the United Kingdom?"},
            {"question": "What is the capital city of China?"},
        ],
        temperature=0.1,
    )
    return ret, rets


def _check_few_shot_qa(result: Any, form: str) -> None:
    ret, rets = result
    assert isinstance(ret["answer"], str) and "\n" not in ret["answer"]
    assert len(rets) == 3 and all(isinstance(x["answer"], str) for x in rets)


Q1 = "Compose an engaging travel blog post about a recent trip to Hawaii."
Q2 = "Rewrite your previous response. Start every sentence with the letter A."


def _mt_bench(p: Any) -> Any:
    return p.run(question_1=Q1, question_2=Q2, temperature=0.7, max_new_tokens=64)


def _check_mt_bench(ret: Any, form: str) -> None:
    messages = ret.messages()
    assert len(messages) in [4, 5]
    assert [m["role"] for m in messages][:4] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == ret["answer_1"]


STATEMENTS = [
    "The capital of Germany is Berlin.",
    "The capital of Canada is Tokyo.",
    "Purple is a better color than green.",
]


def _select(p: Any) -> Any:
    return [p.run(statement=s) for s in STATEMENTS]


def _check_select(rets: Any, form: str) -> None:
    for ret in rets:
        assert ret["answer"] in ["True", "False", "Unknown"], ret.text()


def _check_decode_int(ret: Any, form: str) -> None:
    assert isinstance(int(ret["hours"]), int) and isinstance(int(ret["days"]), int)
    assert f"is {ret['hours']}\n" in ret.text()


def _check_json(ret: Any, form: str) -> None:
    # strict=False: SGLang's REGEX_STR admits \s, so a tab or newline inside the string is
    # possible (the original test would trip on it too); the structure is what is checked
    js_obj = json.loads(ret["json_output"], strict=False)
    assert isinstance(js_obj["name"], str)
    assert isinstance(js_obj["population"], int)


def _expert(p: Any) -> Any:
    return p.run(question="What is the capital of France?", temperature=0.1)


def _check_expert(ret: Any, form: str) -> None:
    assert f"For example,{ret['expert']} would answer that " in ret.text()


def _tool_use(p: Any) -> Any:
    return p(lhs=257, rhs=983, temperature=0, tools=[py.calculate])


def _check_tool_use(ret: Any, form: str) -> None:
    # SGLang asserts int(answer) == 257 * 983 on a real model; here: the tool ran on the
    # generated expression and its result is the answer, at the end of the text
    assert ret["answer"] == py.calculate(ret["expression"])
    assert ret.text().endswith(") = " + ret["answer"])


def _react(p: Any) -> Any:
    return p.run(question="What country does the creator of Linux live in?", temperature=0.1)


def _check_react(ret: Any, form: str) -> None:
    if form == "nano":
        actions = ret["action"]
        finished = len(ret["answer"]) == 1
    else:
        actions = [ret[f"action_{i}"] for i in range(1, 5) if f"action_{i}" in ret]
        finished = "answer" in ret
    assert 1 <= len(actions) <= 4 and set(actions) <= {"Search", "Finish"}
    assert finished == (actions[-1] == "Finish")
    assert all(a == "Search" for a in actions[:-1])


def _parallel_decoding(p: Any) -> Any:
    return p.run(topic="writing a good blog post", temperature=0.3)


def _check_parallel_decoding(ret: Any, form: str) -> None:
    assert isinstance(ret["summary"], str)
    tips = ret["detailed_tip"]
    assert len(tips) == 5 and all(f"Tip {i + 1}:{t}\n" in ret.text() for i, t in enumerate(tips))


def _parallel_encoding(p: Any) -> Any:
    return p.run(
        question="Who is the father of Julian?",
        context_0="Ethan is the father of Liam.",
        context_1="Noah is the father of Julian.",
        context_2="Oliver is the father of Carlos.",
        temperature=0,
    )


def _check_parallel_encoding(ret: Any, form: str) -> None:
    assert isinstance(ret["answer"], str)
    text = ret.text()
    expected = (
        "Statement 0: Ethan is the father of Liam.\nStatement 1: Noah is the father of Julian.\n"
        "Statement 2: Oliver is the father of Carlos.\nNow, please answer"
    )
    assert expected in text


def _check_regex(ret: Any, form: str) -> None:
    assert re.match(py.IP_REGEX, ret["answer"]), ret["answer"]


def _check_dtype(ret: Any, form: str) -> None:
    int(ret["int_res"])
    float(ret["float_res"])
    bool(ret["bool_res"])
    # (SGLang's own check of the quotes is commented out: max_tokens may cut the string)
    assert ret["str_res"].startswith('"')


HELLASWAG = [
    {"activity_label": "Cooking", "ctx": "A man cracks two eggs into a bowl. He",
     "endings": ["whisks them with a fork.", "paints the ceiling.", "drives to work.",
                 "sings to the eggs."], "label": 0},
    {"activity_label": "Running", "ctx": "A woman ties her shoes at the track. She",
     "endings": ["starts to jog around the lane.", "opens an umbrella.", "eats the shoes.",
                 "reads a novel."], "label": 0},
    {"activity_label": "Gardening", "ctx": "A boy digs a small hole in the soil. He",
     "endings": ["flies away.", "plants a seed in it.", "calls a taxi.", "bakes a cake."],
     "label": 1},
]  # fmt: skip


def _hellaswag(p: Any) -> Any:
    def get_one_example(lines: list[dict], i: int, include_answer: bool) -> str:
        ret = lines[i]["activity_label"] + ": " + lines[i]["ctx"] + " "
        if include_answer:
            ret += lines[i]["endings"][lines[i]["label"]]
        return ret

    few_shot_examples = get_one_example(HELLASWAG, 0, True) + "\n\n"
    questions = [get_one_example(HELLASWAG, i, False) for i in range(1, 3)]
    choices = [HELLASWAG[i]["endings"] for i in range(1, 3)]
    arguments = [
        {"few_shot_examples": few_shot_examples, "question": q, "choices": c}
        for q, c in zip(questions, choices, strict=True)
    ]
    rets = p.run_batch(arguments, temperature=0, num_threads=64, progress_bar=False)
    return [choices[i].index(rets[i]["answer"]) for i in range(len(rets))]


def _check_hellaswag(preds: Any, form: str) -> None:
    assert len(preds) == 2 and all(0 <= p < 4 for p in preds)


def _min_tokens(p: Any) -> Any:
    return p.run()


def _check_min_tokens(state: Any, form: str) -> None:
    tokenizer = nl.default_backend().tokenizer
    assert len(tokenizer.encode(state["answer"], add_special_tokens=False)) >= 64


def _readme_tool_use(p: Any) -> Any:
    return p.run(question="What is the capital of the United States?")


def _check_readme_tool_use(state: Any, form: str) -> None:
    assert state["tool"] in ["calculator", "search engine"]
    assert ("expression" in state) == (state["tool"] == "calculator")
    assert ("word" in state) == (state["tool"] == "search engine")


def _check_tip_suggestion(state: Any, form: str) -> None:
    text = state.text()
    assert text.index("Tip 1:") < text.index("Tip 2:") < text.index("In summary")
    assert text.endswith("In summary" + state["summary"])
    if form == "nano":
        tips = state["detailed_tip"]
        assert f"Tip 1:{tips[0]}\nTip 2:{tips[1]}\n" in text


def _text_qa(p: Any) -> Any:
    questions = ["the United Kingdom", "France", "Japan"]
    return p.run_batch(
        [{"question": f"What is the capital of {q}?"} for q in questions], progress_bar=False
    )


def _check_text_qa(states: Any, form: str) -> None:
    assert len(states) == 3 and all(s.text().startswith("Q: What is the capital") for s in states)


def _choices_logprob(p: Any) -> Any:
    state = p.run("What is 5 + 5?")
    states = p.run_batch([{"question": q} for q in ["What is 5 + 6?", "Who is Jordan?"]])
    return [state, *states]


def _check_choices_logprob(states: Any, form: str) -> None:
    for state in states:
        assert state["tool"] in ["calculator", "search engine"]
        meta_info = state["meta"] if form == "nano" else state.get_meta_info("tool")
        first, second = meta_info["input_token_logprobs"][0], meta_info["input_token_logprobs"][1]
        assert all(lp <= 0 for lp, _, _ in first + second)


def _parallel_sample(p: Any) -> Any:
    return p.run(question="Compute 5 + 2 + 4.", n=5, temperature=1.0)


def _check_parallel_sample(state: Any, form: str) -> None:
    for i in range(5):
        obj = {k: state[k][i] for k in ("reasoning", "tool", "answer")}
        assert obj["tool"] in ["calculator", "browser"] and isinstance(obj["answer"], str)


SECTOR = "You are analyzing AI infrastructure semiconductor companies under a CapEx ROI framework."
COMPANIES = {
    "NVDA": "NVIDIA: dominant AI training silicon supplier.",
    "AMD": "AMD: second-source AI silicon disruptor.",
    "AVGO": "Broadcom: AI custom ASIC and networking.",
    "INTC": "Intel: recovering from a foundry pivot.",
}
QUESTION = "Which chipmaker has the most defensible position?"


def _industry_sweep(p: Any) -> Any:
    companies = COMPANIES if p is py.industry_sweep else [[k, v] for k, v in COMPANIES.items()]
    state = p.run(
        sector_context=SECTOR, companies=companies, research_question=QUESTION, max_tokens=24
    )
    state.text()
    return state


def _check_industry_sweep(state: Any, form: str) -> None:
    text = state.text()
    for ticker in COMPANIES:
        assert f"\n[{ticker}] " in text
    assert isinstance(state["sector_pick"], str)


def _stream(p: Any) -> Any:
    question = "Compose an engaging travel blog post about a recent trip to Hawaii."
    ret = p(question=question, stream=True)
    out = ""
    for chunk in ret.text_iter():
        out += chunk
    ret2 = p(question=question, stream=True)
    out2 = ""
    for chunk in ret2.text_iter("answer"):
        out2 += chunk
    return ret, out, ret2, out2


def _check_stream(result: Any, form: str) -> None:
    ret, out, ret2, out2 = result
    assert out == ret.text() and out2 == ret2["answer"]


def _multi_turn(p: Any) -> Any:
    single = p.run(
        question_1="What is the capital of the United States?",
        question_2="List two local attractions.",
    )
    stream = p.run(
        question_1="What is the capital of the United States?",
        question_2="List two local attractions.",
        stream=True,
    )
    out = "".join(stream.text_iter())
    batch = p.run_batch(
        [
            {"question_1": "What is the capital of the United States?",
             "question_2": "List two local attractions."},
            {"question_1": "What is the capital of France?",
             "question_2": "What is the population of this city?"},
        ]
    )  # fmt: skip
    return single, stream, out, batch


def _check_multi_turn(result: Any, form: str) -> None:
    single, stream, out, batch = result
    for state in (single, stream, *batch):
        messages = state.messages()
        assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
        assert messages[1]["content"] == state["answer_1"]
        assert messages[3]["content"] == state["answer_2"]
    assert out == stream.text() and len(batch) == 2


def _multi_turn_n(p: Any) -> Any:
    single = p.run(
        question_1="What is the capital of the United States?",
        question_2="List two local attractions.",
    )
    batch = p.run_batch(
        [
            {"question_1": "What is the capital of the United States?",
             "question_2": "List two local attractions."},
            {"question_1": "What is the capital of France?",
             "question_2": "What is the population of this city?"},
        ]
    )  # fmt: skip
    return [single, *batch]


def _check_multi_turn_n(states: Any, form: str) -> None:
    for state in states:  # SGLang's own asserts
        assert isinstance(state["answer_1"], list)
        assert len(state["answer_1"]) == 2
        assert isinstance(state["answer_2"], str)


def _few_shot_complete(p: Any) -> Any:
    single = p.run(question="What is the capital of the United States?")
    stream = p.run(question="What is the capital of the United States?", stream=True)
    out = "".join(stream.text_iter("answer"))
    batch = p.run_batch(
        [
            {"question": "What is the capital of the United States?"},
            {"question": "What is the capital of China?"},
        ]
    )
    return single, stream, out, batch


def _check_few_shot_complete(result: Any, form: str) -> None:
    single, stream, out, batch = result
    assert "\n" not in single["answer"] and single.text().endswith("A:" + single["answer"])
    assert out == stream["answer"]
    assert len(batch) == 2 and all(isinstance(s["answer"], str) for s in batch)


def _check_character(state: Any, form: str) -> None:
    # SGLang prints the text; what holds on any model: the output is a whole match of the regex
    assert re.fullmatch(py.character_regex, state["json_output"]), state["json_output"]
    assert state.text().endswith("The JSON output is:\n" + state["json_output"])


def _check_wizard(state: Any, form: str) -> None:
    assert re.fullmatch(py.WIZARD_REGEX, state["character"]), state["character"]
    py.Wizard.model_validate_json(state["character"])


def _triton_character(p: Any) -> Any:
    return p.run_batch([{"name": "Hermione Granger"}, {"name": "Ron Weasley"}])


def _check_triton_character(states: Any, form: str) -> None:
    assert len(states) == 2
    for state in states:
        py.Character.model_validate_json(state["json_output"])
        assert state.text().endswith(state["json_output"])


COT_QUESTION = (
    "Claire makes a 3 egg omelet every morning for breakfast. How many dozens of eggs will she "
    "eat in 4 weeks?"
)


def _cot_decoding(p: Any) -> Any:
    ret = p.run(question=COT_QUESTION, get_top_k=10, is_chat_model=True, verbose=False)
    if isinstance(ret, dict):  # the .nano form returns lists per field; as the Python form's
        ret = [dict(zip(ret, path, strict=True)) for path in zip(*ret.values(), strict=True)]
    return ret


def _check_cot_decoding(paths: Any, form: str) -> None:
    # the 10 likeliest first tokens, likeliest first (their probabilities sum to at most 1);
    # each path's score is a mean of top-1 minus top-2 probabilities, so in [0, 1]
    assert len(paths) == 10
    probs = [p["prob"] for p in paths]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6, probs
    assert len({p["text"] for p in paths}) == 10
    for path in paths:
        assert isinstance(path["text"], str) and isinstance(path["answer"], str)
        assert path["score"] == "nan" or 0 <= path["score"] <= 1, path


def _check_chinese_character(state: Any, form: str) -> None:
    out = state["json_output"]
    assert re.fullmatch(py.chinese_character_regex, out), out
    assert state.text().endswith("的信息：\n" + out)


PORTS = [
    Port("few_shot_qa", "test_programs.py", ("few_shot_qa.nano", "few_shot_qa"),
         py.few_shot_qa, _few_shot_qa, _check_few_shot_qa),
    Port("mt_bench", "test_programs.py", ("mt_bench.nano", "answer_mt_bench"),
         py.answer_mt_bench, _mt_bench, _check_mt_bench),
    Port("select", "test_programs.py", ("select.nano", "true_or_false"),
         py.true_or_false, _select, _check_select),
    Port("decode_int", "test_programs.py", ("decode_int.nano", "decode_int"),
         py.decode_int, lambda p: p.run(temperature=0.1), _check_decode_int),
    Port("decode_json_regex", "test_programs.py", ("decode_json_regex.nano", "decode_json"),
         py.decode_json_regex, lambda p: p.run(temperature=0.0), _check_json),
    Port("decode_json", "test_programs.py", ("decode_json.nano", "decode_json"),
         py.decode_json, lambda p: p.run(max_new_tokens=64), _check_json),
    Port("expert_answer", "test_programs.py", ("expert_answer.nano", "expert_answer"),
         py.expert_answer, _expert, _check_expert),
    Port("tool_use", "test_programs.py", ("tool_use.nano", "tool_use"),
         py.tool_use, _tool_use, _check_tool_use),
    Port("react", "test_programs.py", ("react.nano", "react"), py.react, _react, _check_react),
    Port("parallel_decoding", "test_programs.py", ("parallel_decoding.nano", "parallel_decoding"),
         py.parallel_decoding, _parallel_decoding, _check_parallel_decoding),
    Port("parallel_encoding", "test_programs.py", ("parallel_encoding.nano", "parallel_encoding"),
         py.parallel_encoding, _parallel_encoding, _check_parallel_encoding),
    Port("regex", "test_programs.py", ("regex.nano", "regex_gen"),
         py.regex_gen, lambda p: p.run(), _check_regex),
    Port("dtype_gen", "test_programs.py", ("dtype_gen.nano", "dtype_gen"),
         py.dtype_gen, lambda p: p.run(), _check_dtype),
    Port("hellaswag_select", "test_programs.py", ("hellaswag_select.nano", "few_shot_hellaswag"),
         py.few_shot_hellaswag, _hellaswag, _check_hellaswag),
    Port("gen_min_new_tokens", "test_programs.py, usage/sgl_gen_min_tokens.py",
         ("gen_min_tokens.nano", "convo_1"), py.convo_1, _min_tokens, _check_min_tokens),
    Port("readme_tool_use", "usage/readme_examples.py", ("readme_tool_use.nano", "tool_use"),
         py.readme_tool_use, _readme_tool_use, _check_readme_tool_use),
    Port("tip_suggestion", "usage/readme_examples.py", ("tip_suggestion.nano", "tip_suggestion"),
         py.tip_suggestion, lambda p: p.run(), _check_tip_suggestion),
    Port("regular_expression_gen", "usage/readme_examples.py", ("regex.nano", "regex_gen"),
         py.regex_gen, lambda p: p.run(), _check_regex),
    Port("text_qa_batch", "usage/readme_examples.py", ("text_qa.nano", "text_qa"),
         py.text_qa, _text_qa, _check_text_qa),
    Port("choices_logprob", "usage/choices_logprob.py", ("choices_logprob.nano", "tool_use"),
         py.choices_logprob, _choices_logprob, _check_choices_logprob),
    Port("parallel_sample", "usage/parallel_sample.py", ("parallel_sample.nano", "parallel_sample"),
         py.parallel_sample, _parallel_sample, _check_parallel_sample),
    Port("stream", "test_programs.py, usage/streaming.py", ("stream.nano", "qa"),
         py.qa, _stream, _check_stream),
    Port("industry_sweep", "usage/multi_stage_fork.py", ("industry_sweep.nano", "industry_sweep"),
         py.industry_sweep, _industry_sweep, _check_industry_sweep),
    Port("multi_turn_question", "quick_start/local_example_chat.py (and *_example_chat.py)",
         ("multi_turn.nano", "multi_turn_question"), py.multi_turn_question, _multi_turn,
         _check_multi_turn),
    Port("multi_turn_n", "quick_start/openai_example_n.py", ("multi_turn.nano", "multi_turn_n"),
         py.multi_turn_n, _multi_turn_n, _check_multi_turn_n),
    Port("few_shot_qa_complete", "quick_start/local_example_complete.py (and *_complete.py)",
         ("few_shot_complete.nano", "few_shot_qa"), py.few_shot_qa_complete, _few_shot_complete,
         _check_few_shot_complete),
    Port("character_gen", "usage/json_decode.py", ("json_decode.nano", "character_gen"),
         py.character_gen, lambda p: p.run(name="Hermione Granger"), _check_character),
    Port("pydantic_wizard_gen", "usage/json_decode.py",
         ("json_decode.nano", "pydantic_wizard_gen"), py.pydantic_wizard_gen,
         lambda p: p.run(), _check_wizard),
    Port("triton_character_gen", "usage/triton/models/character_generation/1/model.py",
         ("json_decode.nano", "triton_character_gen"), py.triton_character_gen,
         _triton_character, _check_triton_character),
    Port("chinese_regex", "usage/chinese_regex.py", ("chinese_regex.nano", "character_gen"),
         py.chinese_character_gen, lambda p: p.run(name="赫敏格兰杰", temperature=0),
         _check_chinese_character),
    Port("cot_decoding", "usage/cot_decoding.py", ("cot_decoding.nano", "cot_decoding"),
         py.cot_decoding, _cot_decoding, _check_cot_decoding),
]  # fmt: skip

EXCLUDED = [
    Excluded("image_qa", "test_programs.py", "needs images (refused: no vision model)"),
    Excluded("completion_speculative", "test_programs.py", "API speculative execution"),
    Excluded("chat_completion_speculative", "test_programs.py", "API speculative execution"),
    Excluded("openai_chat_speculative", "usage/openai_chat_speculative.py", "API speculative"),
    Excluded("openai_speculative", "usage/openai_speculative.py", "API speculative"),
    Excluded("llava / yi_vl / openvla / gemini multimodal",
             "quick_start/*llava*, *yi_vl*, openvla_example.py, gemini_example_multimodal_chat.py, "
             "usage/llava_video, usage/local_example_llava_next.py", "needs images/video"),
    Excluded("json_logprobs", "usage/json_logprobs.py",
             "not a frontend program: raw HTTP requests to /generate and /v1/completions"),
    Excluded("srt_engine", "usage/srt_engine.py", "not a frontend program: the Engine API"),
    Excluded("rag_using_parea", "usage/rag_using_parea/*.ipynb",
             "needs external services (Parea tracing, OpenAI embeddings)"),
    Excluded("API quick starts", "quick_start/{openai,anthropic,azure_openai,gemini,openrouter,"
             "together,shortfin,orcarouter}_example_{chat,complete}.py, openai_example_o1.py, "
             "local_example_chat_quarot.py",
             "the multi_turn_question and few_shot_qa programs (ported above) on vendor APIs"),
]  # fmt: skip
