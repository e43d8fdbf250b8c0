//! The function ids of element-wise and reduction ops: [`Unary`], [`Binary`], [`Reduce`],
//! and their stored encodings.

/// Element-wise functions of [`opcode::UNARY`](super::opcode::UNARY) (the function id).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh x`.
    Tanh,
    /// `e^x`.
    Exp,
    /// `ln x`.
    Log,
    /// `sqrt x`.
    Sqrt,
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `1 / x`.
    Reciprocal,
    /// `x` for `x >= 0`, `alpha x` otherwise.
    LeakyRelu(f32),
    /// `x` for `x > 0`, `alpha (e^x - 1)` otherwise.
    Elu(f32),
    /// `max(0, min(1, alpha x + beta))`.
    HardSigmoid(f32, f32),
    /// `ln(1 + e^x)`.
    Softplus,
    /// `min(max(x, lo), hi)`.
    Clip(f32, f32),
    /// `floor x`.
    Floor,
    /// `ceil x`.
    Ceil,
    /// `x` (a copy).
    Identity,
    /// `sin x`.
    Sin,
    /// `cos x`.
    Cos,
    /// The error function `erf x` (ONNX `Erf`; PyTorch exports exact GELU through it).
    Erf,
    /// `x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`, the exact GELU (ONNX `Gelu`, opset 20).
    Gelu,
    /// `x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2`, GELU's tanh approximation.
    GeluTanh,
    /// `x min(max(x + 3, 0), 6) / 6` (ONNX `HardSwish`, MobileNetV3).
    HardSwish,
    /// `x^p` for a constant exponent (ONNX `Pow` with a scalar constant exponent).
    Pow(f32),
}

impl Unary {
    /// The function id and its two parameters, as stored.
    pub fn encode(self) -> [u32; 3] {
        let (id, a, b) = match self {
            Unary::Sigmoid => (1, 0.0, 0.0),
            Unary::Tanh => (2, 0.0, 0.0),
            Unary::Exp => (3, 0.0, 0.0),
            Unary::Log => (4, 0.0, 0.0),
            Unary::Sqrt => (5, 0.0, 0.0),
            Unary::Neg => (6, 0.0, 0.0),
            Unary::Abs => (7, 0.0, 0.0),
            Unary::Reciprocal => (8, 0.0, 0.0),
            Unary::LeakyRelu(a) => (9, a, 0.0),
            Unary::Elu(a) => (10, a, 0.0),
            Unary::HardSigmoid(a, b) => (11, a, b),
            Unary::Softplus => (12, 0.0, 0.0),
            Unary::Clip(lo, hi) => (13, lo, hi),
            Unary::Floor => (14, 0.0, 0.0),
            Unary::Ceil => (15, 0.0, 0.0),
            Unary::Identity => (16, 0.0, 0.0),
            Unary::Sin => (17, 0.0, 0.0),
            Unary::Cos => (18, 0.0, 0.0),
            Unary::Erf => (19, 0.0, 0.0),
            Unary::Gelu => (20, 0.0, 0.0),
            Unary::GeluTanh => (21, 0.0, 0.0),
            Unary::HardSwish => (22, 0.0, 0.0),
            Unary::Pow(p) => (23, p, 0.0),
        };
        [id, f32::to_bits(a), f32::to_bits(b)]
    }

    /// The function of a stored id and parameters; `None` for an unknown id or a
    /// parameter that is NaN (infinite clip bounds are allowed).
    pub fn decode(id: u32, a: u32, b: u32) -> Option<Self> {
        let (a, b) = (f32::from_bits(a), f32::from_bits(b));
        let finite = a.is_finite() && b.is_finite();
        Some(match id {
            1 => Unary::Sigmoid,
            2 => Unary::Tanh,
            3 => Unary::Exp,
            4 => Unary::Log,
            5 => Unary::Sqrt,
            6 => Unary::Neg,
            7 => Unary::Abs,
            8 => Unary::Reciprocal,
            9 if finite => Unary::LeakyRelu(a),
            10 if finite => Unary::Elu(a),
            11 if finite => Unary::HardSigmoid(a, b),
            12 => Unary::Softplus,
            13 if !a.is_nan() && !b.is_nan() => Unary::Clip(a, b),
            14 => Unary::Floor,
            15 => Unary::Ceil,
            16 => Unary::Identity,
            17 => Unary::Sin,
            18 => Unary::Cos,
            19 => Unary::Erf,
            20 => Unary::Gelu,
            21 => Unary::GeluTanh,
            22 => Unary::HardSwish,
            23 if finite => Unary::Pow(a),
            _ => return None,
        })
    }
}

/// Element-wise binary ops (numpy broadcasting within a sample; see
/// [`Op::Binary`](super::Op::Binary)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b`.
    Div,
    /// `a^b` (ONNX `Pow` with a tensor exponent).
    Pow,
    /// `max(a, b)`, NaN if either is NaN (ONNX `Max`).
    Max,
    /// `min(a, b)`, NaN if either is NaN (ONNX `Min`).
    Min,
    /// `a` for `a >= 0`, `b a` otherwise: a parametric ReLU whose slope `b` broadcasts
    /// (ONNX `PRelu`).
    PRelu,
    /// `1` if `a == b`, else `0` (ONNX `Equal`; NaN equals nothing).
    Equal,
    /// `1` if `a > b`, else `0` (false when either is NaN).
    Greater,
    /// `1` if `a < b`, else `0`.
    Less,
    /// `1` if `a >= b`, else `0`.
    GreaterOrEqual,
    /// `1` if `a <= b`, else `0`.
    LessOrEqual,
}

impl Binary {
    /// The function id of an [`opcode::BINARY`](super::opcode::BINARY) op; `None` for the
    /// four ops that have their own opcodes (add, sub, mul, div: the format's first
    /// version).
    pub fn encode(self) -> Option<u32> {
        match self {
            Binary::Add | Binary::Sub | Binary::Mul | Binary::Div => None,
            Binary::Pow => Some(1),
            Binary::Max => Some(2),
            Binary::Min => Some(3),
            Binary::PRelu => Some(4),
            Binary::Equal => Some(5),
            Binary::Greater => Some(6),
            Binary::Less => Some(7),
            Binary::GreaterOrEqual => Some(8),
            Binary::LessOrEqual => Some(9),
        }
    }

    /// The op of a stored [`opcode::BINARY`](super::opcode::BINARY) function id.
    pub fn decode(id: u32) -> Option<Self> {
        Some(match id {
            1 => Binary::Pow,
            2 => Binary::Max,
            3 => Binary::Min,
            4 => Binary::PRelu,
            5 => Binary::Equal,
            6 => Binary::Greater,
            7 => Binary::Less,
            8 => Binary::GreaterOrEqual,
            9 => Binary::LessOrEqual,
            _ => return None,
        })
    }
}

/// Reductions of [`opcode::REDUCE`](super::opcode::REDUCE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduce {
    /// Arithmetic mean.
    Mean,
    /// Sum.
    Sum,
    /// Largest element (NaN if any is NaN).
    Max,
    /// Smallest element (NaN if any is NaN).
    Min,
}

impl Reduce {
    /// The stored kind.
    pub fn encode(self) -> u32 {
        match self {
            Reduce::Mean => 0,
            Reduce::Sum => 1,
            Reduce::Max => 2,
            Reduce::Min => 3,
        }
    }

    /// The reduction of a stored kind.
    pub fn decode(k: u32) -> Option<Self> {
        Some(match k {
            0 => Reduce::Mean,
            1 => Reduce::Sum,
            2 => Reduce::Max,
            3 => Reduce::Min,
            _ => return None,
        })
    }
}
